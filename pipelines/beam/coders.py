"""Beam coders for every record kind and for Rejection: their own compact byte encoding, never pickle.

Registered for the record types, so any PCollection declared with one of these types (see the
`with_output_types` calls in pipelines/beam/routing.py and the stages) is encoded with them; a
test walks the curate graph and fails on any pickling coder.
"""

from __future__ import annotations

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
