"""Beam coders for Sample and Rejection: their own compact byte encoding, never pickle."""

from __future__ import annotations

from apache_beam import coders

from filters.sample import Rejection, Sample


class SampleCoder(coders.Coder):
    def encode(self, value: Sample) -> bytes:
        return value.to_bytes()

    def decode(self, encoded: bytes) -> Sample:
        return Sample.from_bytes(encoded)

    def is_deterministic(self) -> bool:
        return False  # JSON dict ordering is not guaranteed stable; never used as a grouping key

    def to_type_hint(self):
        return Sample


class RejectionCoder(coders.Coder):
    def encode(self, value: Rejection) -> bytes:
        return value.to_bytes()

    def decode(self, encoded: bytes) -> Rejection:
        return Rejection.from_bytes(encoded)

    def is_deterministic(self) -> bool:
        return True

    def to_type_hint(self):
        return Rejection


coders.registry.register_coder(Sample, SampleCoder)
coders.registry.register_coder(Rejection, RejectionCoder)
