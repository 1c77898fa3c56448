"""The interleaved document: an ordered list of text and image nodes, as OBELICS-style extraction
produces them from a web page.

Each node keeps its own metadata and source URL, so a stage can drop or edit one node (a
boilerplate paragraph, a tiny image) without rejecting the whole document; such edits are counted
per reason in the funnel. Like Sample, a Document has a compact pickle-free byte encoding: a JSON
header with every node's fields, then each image node's bytes.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any, ClassVar

from filters.sample import refuse_pickle

_HEADER_LEN = struct.Struct(">I")


@dataclass(slots=True)
class TextNode:
    text: str
    meta: dict[str, Any] = field(default_factory=dict)  # e.g. tag path, position on the page


@dataclass(slots=True)
class ImageNode:
    url: str | None  # where the image came from (src, resolved against the page)
    image: bytes | None = None  # once fetched
    image_ext: str | None = None
    alt_text: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # e.g. declared width/height, fetch status


Node = TextNode | ImageNode


@dataclass(slots=True)
class Document:
    """One web page's content in reading order.

    `meta` is document-level provenance (page URL, domain, WARC file and record offset, crawl
    date); `annotations` are what vlcurate's stages computed about the whole document.
    """

    KIND: ClassVar[str] = "document"

    key: str
    source: str  # the input file (e.g. the WARC) this document came from
    url: str | None = None  # the page URL
    nodes: list[Node] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    annotations: dict[str, Any] = field(default_factory=dict)

    __reduce_ex__ = refuse_pickle

    @property
    def texts(self) -> list[str | None]:
        """OBELICS' `texts` column: the text at each position, None where an image stands."""
        return [n.text if isinstance(n, TextNode) else None for n in self.nodes]

    @property
    def images(self) -> list[str | None]:
        """OBELICS' `images` column: the image URL at each position, None where text stands."""
        return [n.url if isinstance(n, ImageNode) else None for n in self.nodes]

    def to_bytes(self) -> bytes:
        nodes, blobs = [], []
        for node in self.nodes:
            if isinstance(node, TextNode):
                nodes.append({"t": "text", "text": node.text, "meta": node.meta})
            else:
                nodes.append({"t": "image", "url": node.url, "ext": node.image_ext, "alt": node.alt_text,
                              "meta": node.meta, "len": None if node.image is None else len(node.image)})
                if node.image is not None:
                    blobs.append(node.image)
        header = {"key": self.key, "source": self.source, "url": self.url, "meta": self.meta,
                  "annotations": self.annotations, "nodes": nodes}
        encoded = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return b"".join([_HEADER_LEN.pack(len(encoded)), encoded, *blobs])

    @classmethod
    def from_bytes(cls, data: bytes) -> Document:
        (n,) = _HEADER_LEN.unpack_from(data)
        header = json.loads(data[4 : 4 + n].decode("utf-8"))
        position = 4 + n
        nodes: list[Node] = []
        for item in header.pop("nodes"):
            if item["t"] == "text":
                nodes.append(TextNode(item["text"], item["meta"]))
                continue
            image = None
            if item["len"] is not None:
                image = bytes(data[position : position + item["len"]])
                position += item["len"]
            nodes.append(ImageNode(item["url"], image, item["ext"], item["alt"], item["meta"]))
        return cls(nodes=nodes, **header)
