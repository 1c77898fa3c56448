"""Exact duplicates: identical image bytes. The copy with the smallest key survives, so the
choice does not depend on the order in which a runner delivers the copies."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TypeVar

from filters.sample import Sample

T = TypeVar("T")


def image_digest(sample: Sample) -> str:
    """sha256 of the image bytes, also recorded as the sample's `image_sha256` annotation."""
    digest = hashlib.sha256(sample.image or b"").hexdigest()
    sample.annotations["image_sha256"] = digest
    return digest


def split_duplicates(copies: list[T], order: Callable[[T], tuple] = lambda s: (s.key, s.source)) -> tuple[T, list[T]]:
    """(survivor, the rest): smallest key first, the source path breaking ties. `order` reads them
    from what is given (Samples, or the stage's light (key, source, id) tuples)."""
    ordered = sorted(copies, key=order)
    return ordered[0], ordered[1:]
