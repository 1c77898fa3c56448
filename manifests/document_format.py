"""The shard layout of interleaved documents (OBELICS' columns), written and read in one place.

One webdataset sample per document in `NNNNN.tar`:
- `KEY.json`: OBELICS' layout — `texts` and `images`, lists of equal length where exactly one of
  the two is non-null at each position (consecutive paragraphs are one `texts` entry, joined by a
  blank line, as in the released OBELICS), `metadata` (per position: the image's alt text, member
  name and declared size; null for text), and `general_metadata` (url, domain, WARC file and
  offset, language and score, ...), plus `key` and `url`;
- `KEY.N.EXT`: the bytes of the fetched image at position N (webdataset reads it as the field
  `N.EXT` of the sample).
`metadata/NNNNN.parquet` holds the same columns (metadata and general_metadata as JSON strings, as OBELICS
publishes them), one row per document, for HF datasets and duckdb. docs/SHARD_FORMAT.md says the same.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from filters.document import Document, ImageNode, TextNode
from filters.image_format import extension_for
from manifests.shard_format import METADATA_EXT, SHARDS_DIR, TABLES_DIR, add_member, iter_tar_records

PARAGRAPH_SEPARATOR = "\n\n"

DOCUMENT_PARQUET_SCHEMA = pa.schema([
    ("key", pa.string()),
    ("url", pa.string()),
    ("source", pa.string()),
    ("texts", pa.list_(pa.string())),
    ("images", pa.list_(pa.string())),
    ("metadata", pa.string()),
    ("general_metadata", pa.string()),
])


def document_json(doc: Document) -> dict[str, Any]:
    """KEY.json of a document: OBELICS' columns (texts, images, metadata, general_metadata)."""
    texts: list[str | None] = []
    images: list[str | None] = []
    metadata: list[dict[str, Any] | None] = []
    for node in doc.nodes:
        if isinstance(node, TextNode):
            if texts and texts[-1] is not None:  # consecutive paragraphs: one entry
                texts[-1] += PARAGRAPH_SEPARATOR + node.text
            else:
                texts.append(node.text)
                images.append(None)
                metadata.append(None)
            continue
        if not node.url:  # OBELICS' layout holds exactly one of text and URL per position
            raise ValueError(f"image node {len(texts)} has no URL; the layout cannot hold it")
        position = len(texts)
        entry = {k: v for k, v in node.meta.items()}
        if node.alt_text is not None:
            entry["alt_text"] = node.alt_text
        if node.image is not None:
            entry["member"] = f"{doc.key}.{position}.{_extension(node)}"
        texts.append(None)
        images.append(node.url)
        metadata.append(entry)
    general = {**doc.meta, **doc.annotations}
    general.setdefault("url", doc.url)
    return {"key": doc.key, "url": doc.url, "texts": texts, "images": images, "metadata": metadata,
            "general_metadata": general}


def _extension(node: ImageNode) -> str:
    return node.image_ext or extension_for(node.image or b"")


def document_row(doc: Document, layout: dict[str, Any]) -> dict[str, Any]:
    return {"key": doc.key, "url": doc.url, "source": doc.source, "texts": layout["texts"],
            "images": layout["images"], "metadata": json.dumps(layout["metadata"], ensure_ascii=False),
            "general_metadata": json.dumps(layout["general_metadata"], ensure_ascii=False, sort_keys=True)}


def write_document_tar(out: IO[bytes], docs: list[Document], layouts: list[dict[str, Any]]) -> None:
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for doc, layout in zip(docs, layouts):
            add_member(tar, f"{doc.key}.{METADATA_EXT}",
                       json.dumps(layout, ensure_ascii=False, sort_keys=True).encode("utf-8"))
            images = (n for n in doc.nodes if isinstance(n, ImageNode))
            for entry, node in zip((m for m in layout["metadata"] if m is not None), images):
                if node.image is not None:
                    add_member(tar, entry["member"], node.image)


def write_document_shard(root: str, index: int, docs: list[Document],
                         layouts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """metadata/NNNNN.parquet, then shards/NNNNN.tar, both atomic (like write_pair_shard)."""
    from manifests.storage import atomic_open

    name, parquet_name = f"{SHARDS_DIR}/{index:05d}", f"{TABLES_DIR}/{index:05d}.parquet"
    layouts = [document_json(d) for d in docs] if layouts is None else layouts
    table = pa.Table.from_pylist([document_row(d, lay) for d, lay in zip(docs, layouts)],
                                 schema=DOCUMENT_PARQUET_SCHEMA)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    with atomic_open(f"{root}/{parquet_name}") as out:
        out.write(buffer.getvalue())
    parquet = {"name": parquet_name, "bytes": out.bytes, "sha256": out.sha256.hexdigest()}
    with atomic_open(f"{root}/{name}.tar") as out:
        write_document_tar(out, docs, layouts)
    return {"name": f"{name}.tar", "samples": len(docs), "bytes": out.bytes, "sha256": out.sha256.hexdigest(),
            "metadata": parquet, "kind": Document.KIND}


# ---------------------------------------------------------------- reading
def document_from_layout(layout: dict[str, Any], members: dict[str, bytes], source: str) -> Document:
    """A Document back from KEY.json and its image members (ext "N.EXT" -> bytes)."""
    texts, images, metadata = layout["texts"], layout["images"], layout.get("metadata") or []
    if len(texts) != len(images):
        raise ValueError(f"texts has {len(texts)} entries, images {len(images)}")
    nodes = []
    for position, (text, url) in enumerate(zip(texts, images)):
        if (text is None) == (url is None):
            raise ValueError(f"position {position}: exactly one of texts and images must be set")
        if text is not None:
            nodes.extend(TextNode(p) for p in text.split(PARAGRAPH_SEPARATOR) if p)
            continue
        meta = dict(metadata[position] or {}) if position < len(metadata) else {}
        alt = meta.pop("alt_text", None)
        member = meta.pop("member", None)
        ext = member.rsplit(".", 1)[-1] if member else None
        image = members.get(f"{position}.{ext}") if ext else None
        nodes.append(ImageNode(url, image, ext if image is not None else None, alt, meta))
    general = dict(layout.get("general_metadata") or {})
    return Document(key=layout["key"], source=source, url=layout.get("url"), nodes=nodes, meta=general)


def iter_documents(fileobj: IO[bytes], source: str, max_member_bytes: int = 64 << 20) -> Iterator[Document]:
    """Documents of a shard tar, in order (streaming: works for remote files)."""
    for record in iter_tar_records(fileobj, max_member_bytes):
        if record.problems:
            raise ValueError(f"{record.key}: {record.problems[0][1]}")
        layout = json.loads(record.parts[METADATA_EXT].decode("utf-8"))
        yield document_from_layout(layout, record.parts, source)
