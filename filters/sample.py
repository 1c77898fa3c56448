"""The data model every stage shares: a Sample in flight, and the Rejection it may become.

Both are small slotted dataclasses with a compact, pickle-free byte encoding (used as the Beam
coder in pipelines/coders.py): a JSON header followed by the raw image bytes, so no code from a
shard can ever execute while samples move between workers.
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from filters.url_safety import redact_credentials

_HEADER_LEN = struct.Struct(">I")


class RecordPickledError(TypeError):
    """A record reached a pickling coder: a PCollection holding records lacks its declared type."""


def refuse_pickle(self, protocol=None):
    """Records are data from the web: they travel as bytes in their own encoding, never as pickles.
    Refusing to be pickled turns any graph step whose type was left undeclared (so Beam would fall
    back to pickle) into a loud error in the tests, not a silent, slow and unsafe encoding."""
    raise RecordPickledError(
        f"{type(self).__name__} {getattr(self, 'key', '')!r} was about to be pickled: records move between "
        "workers only through their own coders (pipelines/beam/coders.py); declare the PCollection's type "
        "(with_output_types) on the step that produced it")


@dataclass(slots=True)
class Sample:
    """One image-text pair.

    `meta` is the record's own JSON (e.g. img2dataset's KEY.json), kept as it came;
    `annotations` are what vlcurate's stages computed. KEY.json of a curated shard is
    meta updated with annotations, so annotation names avoid img2dataset's field names.
    `vectors` are computed embeddings as raw float16 bytes (name -> bytes); they travel in
    binary, not JSON, and land as columns of the shard's parquet.
    """

    KIND: ClassVar[str] = "sample"

    key: str
    source: str  # the input file this sample came from
    image: bytes | None = None
    image_ext: str | None = None  # the extension the image had in its shard: jpg, png, webp
    caption: str | None = None
    url: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    annotations: dict[str, Any] = field(default_factory=dict)
    vectors: dict[str, bytes] = field(default_factory=dict)

    __reduce_ex__ = refuse_pickle

    def set_vector(self, name: str, values) -> None:
        """Store a 1-D float array as float16 (half the bytes; cosine scores need no more)."""
        self.vectors[name] = np.asarray(values, dtype="<f2").reshape(-1).tobytes()

    def get_vector(self, name: str):
        """The stored vector as float32, or None."""
        data = self.vectors.get(name)
        return None if data is None else np.frombuffer(data, dtype="<f2").astype(np.float32)

    def to_bytes(self) -> bytes:
        header = {
            "key": self.key,
            "source": self.source,
            "image_ext": self.image_ext,
            "has_image": self.image is not None,
            "caption": self.caption,
            "url": self.url,
            "meta": self.meta,
            "annotations": self.annotations,
            "vectors": [[name, len(data)] for name, data in self.vectors.items()],
            "image_len": len(self.image) if self.image is not None else None,
        }
        encoded = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return b"".join([_HEADER_LEN.pack(len(encoded)), encoded, self.image or b"", *self.vectors.values()])

    @classmethod
    def from_bytes(cls, data: bytes) -> Sample:
        (n,) = _HEADER_LEN.unpack_from(data)
        header = json.loads(data[4 : 4 + n].decode("utf-8"))
        position = 4 + n
        image_len = header.pop("image_len")
        image = None
        if header.pop("has_image"):
            image = bytes(data[position : position + image_len])
            position += image_len
        vectors = {}
        for name, length in header.pop("vectors"):
            vectors[name] = bytes(data[position : position + length])
            position += length
        return cls(image=image, vectors=vectors, **header)


def measured_scores(annotations: dict[str, Any] | None) -> str:
    """The finite numbers among a record's annotations, as a compact JSON object ("" if none)."""
    numbers = {k: v for k, v in (annotations or {}).items()
               if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
    return json.dumps(numbers, sort_keys=True, separators=(",", ":")) if numbers else ""


def printable(text: str) -> str:
    """`text` that encodes as UTF-8: the undecodable bytes of a name (lone surrogates, as Python reads
    them) written as \\xNN, other lone surrogates (from JSON escapes) as \\udNNN."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+>")


@dataclass(slots=True, frozen=True)
class Rejection:
    """A record that did not make it, and why. One row of the rejection table.

    `kind` is the kind of record rejected (sample, document): accounting balances per kind.
    `scores`: the numbers stages had measured on the record when it was dropped (JSON object), so
    the report can draw each score's whole distribution, rejected side included.
    """

    key: str
    source: str
    url: str | None
    stage: str
    reason: str
    detail: str = ""
    kind: str = "sample"
    scores: str = ""

    def __post_init__(self):
        # Names read from tar headers or file systems may hold bytes that are not UTF-8 (Python keeps
        # them as lone surrogates); every string of the table must encode, or the whole run fails.
        for name in ("key", "source", "url", "detail"):
            value = getattr(self, name)
            if isinstance(value, str) and not value.isascii():
                object.__setattr__(self, name, printable(value))
        if isinstance(self.url, str) and "@" in self.url:  # a crawled page's user:password, never in the table
            object.__setattr__(self, "url", redact_credentials(self.url))
        if isinstance(self.detail, str) and " at 0x" in self.detail:  # "<_io.BytesIO object at 0x7f..>" (PIL's errors): the same input
            object.__setattr__(self, "detail", _ADDRESS.sub(">", self.detail))  # gives the same detail

    __reduce_ex__ = refuse_pickle

    @classmethod
    def of(cls, record: Any, stage: str, reason: str, detail: Any = "") -> Rejection:
        """A Rejection of any record kind (anything with key, source, url and KIND)."""
        return cls(record.key, record.source, record.url, stage, reason, str(detail), record.KIND,
                   measured_scores(getattr(record, "annotations", None)))

    @classmethod
    def for_error(cls, key: Any, source: str, url: str | None, stage: str, err: BaseException,
                  kind: str = "sample") -> Rejection:
        """The guard's rejection: reason error_<ExceptionClass>, the message in detail."""
        return cls(str(key)[:200], source, url, stage, f"error_{type(err).__name__}", str(err)[:2000], kind)

    def to_bytes(self) -> bytes:
        return json.dumps(
            [self.key, self.source, self.url, self.stage, self.reason, self.detail, self.kind, self.scores],
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> Rejection:
        return cls(*json.loads(data.decode("utf-8")))

    def as_row(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "source": self.source,
            "url": self.url,
            "stage": self.stage,
            "reason": self.reason,
            "detail": self.detail,
            "kind": self.kind,
            "scores": self.scores or None,
        }
