"""Exact duplicates: identical image bytes. The copy with the smallest key survives, so the
choice does not depend on the order in which a runner delivers the copies."""

from __future__ import annotations

import hashlib

from filters.sample import Sample


def image_digest(sample: Sample) -> str:
    """sha256 of the image bytes, also recorded as the sample's `image_sha256` annotation."""
    digest = hashlib.sha256(sample.image or b"").hexdigest()
    sample.annotations["image_sha256"] = digest
    return digest


def split_duplicates(copies: list[Sample]) -> tuple[Sample, list[Sample]]:
    """(survivor, the rest): smallest key first, the source path breaking ties."""
    ordered = sorted(copies, key=lambda s: (s.key, s.source))
    return ordered[0], ordered[1:]
