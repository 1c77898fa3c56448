"""Beam coders for every record kind and for Rejection: their own compact byte encoding, never pickle.

Registered for the record types, so any PCollection declared with one of these types (see the
`with_output_types` calls in pipelines/beam/routing.py and the stages) is encoded with them; a
test walks the curate graph and fails on any pickling coder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from apache_beam import coders

from filters.document import Document
from filters.sample import Rejection, Sample


class _RecordCoder(coders.Coder):
    record_type: type = object

    def encode(self, value) -> bytes:
        return value.to_bytes()

    def decode(self, encoded: bytes):
        return self.record_type.from_bytes(encoded)

    def is_deterministic(self) -> bool:
        return False  # JSON dict ordering is not guaranteed stable; never used as a grouping key

    def to_type_hint(self):
        return self.record_type


class SampleCoder(_RecordCoder):
    record_type = Sample


class DocumentCoder(_RecordCoder):
    record_type = Document


class RejectionCoder(_RecordCoder):
    record_type = Rejection

    def is_deterministic(self) -> bool:
        return True  # a JSON list of strings


coders.registry.register_coder(Sample, SampleCoder)
coders.registry.register_coder(Document, DocumentCoder)
coders.registry.register_coder(Rejection, RejectionCoder)


@dataclass(slots=True)
class Tagged:
    """A union carrier for steps whose elements are of several kinds (a model's outcomes: records and
    Rejections; one side or the other of a join): a record, or a small JSON-able value."""

    record: Sample | Document | Rejection | None = None
    value: Any = None


_TAGS = {Sample: b"S", Document: b"D", Rejection: b"X"}
_TYPES = {tag: t for t, tag in _TAGS.items()}


class TaggedCoder(coders.Coder):
    def encode(self, t: Tagged) -> bytes:
        if t.record is not None:
            return _TAGS[type(t.record)] + t.record.to_bytes()
        return b"V" + json.dumps(t.value, separators=(",", ":")).encode("utf-8")

    def decode(self, data: bytes) -> Tagged:
        tag, body = bytes(data[:1]), data[1:]
        if tag == b"V":
            return Tagged(value=json.loads(bytes(body).decode("utf-8")))
        return Tagged(_TYPES[tag].from_bytes(body))

    def is_deterministic(self) -> bool:
        return False

    def to_type_hint(self):
        return Tagged


coders.registry.register_coder(Tagged, TaggedCoder)
