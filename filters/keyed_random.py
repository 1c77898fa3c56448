"""Randomness as a pure function of (sample key, recipe seed, purpose).

Runners deliver elements in any order and retry bundles; a draw that depends only on the key and
the seed gives the same result on every runner, worker count and retry.
"""

from __future__ import annotations

import hashlib

_SCALE = float(1 << 64)


def key_hash(key: str, seed: int, purpose: str = "") -> int:
    """A 64-bit integer, uniform over keys, stable across machines and Python versions."""
    digest = hashlib.blake2b(f"{seed}\x00{purpose}\x00{key}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def key_uniform(key: str, seed: int, purpose: str = "") -> float:
    """A float in [0, 1)."""
    return key_hash(key, seed, purpose) / _SCALE
