"""What the report reads from a finished run: the rejection table, the kept records' metadata
parquets, and a few images out of shards and input files. Nothing is re-run; everything sampled is
chosen by a seeded hash of the key, so the same run gives the same page.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from filters.image_checks import ImageProblem
from manifests.manifest import Manifest
from manifests.shard_format import decode_image, index_pairs, read_span

log = logging.getLogger("vlcurate")


def sample_order(key: str, seed: int) -> bytes:
    return hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()


def pick(keys: list[str], n: int, seed: int) -> list[str]:
    """n keys, the same for the same run: the smallest seeded hashes."""
    return sorted(keys, key=lambda k: sample_order(k, seed))[:n]


@dataclass
class Rejected:
    """The rejection table, column by column (one run's may hold millions of rows: no objects per row)."""

    key: list[str]
    source: list[str]
    stage: list[str]
    reason: list[str]
    kind: list[str]
    detail: list[str]
    scores: list[str | None]


def read_rejected(root: str, manifest: Manifest) -> Rejected:
    columns = ["key", "source", "stage", "reason", "kind", "detail", "scores"]
    tables = []
    for entry in manifest.rejected:
        with fsspec.open(f"{root}/{entry.name}", "rb") as f:
            file = pq.ParquetFile(f)
            present = [c for c in columns if c in file.schema_arrow.names]  # `scores`: shard format 3 on
            table = file.read(columns=present)
        for missing in set(columns) - set(present):
            table = table.append_column(missing, pa.nulls(table.num_rows, pa.string()))
        tables.append(table.select(columns))
    if not tables:
        return Rejected(*([] for _ in columns))
    whole = pa.concat_tables(tables)
    return Rejected(*(whole.column(c).to_pylist() for c in columns))


def rejected_scores(rejected: Rejected) -> Iterator[tuple[str, dict[str, Any]]]:
    """(the stage that dropped the record, what stages had measured on it), for records with scores."""
    for stage, scores in zip(rejected.stage, rejected.scores):
        if scores:
            yield stage, json.loads(scores)


def read_kept_table(root: str, manifest: Manifest) -> pa.Table | None:
    """Every kept record's metadata row (all shards); None for a run with no shards."""
    tables = []
    for shard in manifest.shards:
        with fsspec.open(f"{root}/{shard.metadata.name}", "rb") as f:
            file = pq.ParquetFile(f)
            wanted = [n for n in file.schema_arrow.names if not n.endswith("_embedding")]  # vectors: not needed
            tables.append(file.read(columns=wanted).append_column(
                "_shard", pa.array([shard.name] * file.metadata.num_rows, pa.string())))
    if not tables:
        return None
    return pa.concat_tables(tables, promote_options="permissive")


def images_from_tar(url: str, keys: list[str]) -> dict[str, tuple[Any, str]]:
    """key -> (decoded RGB image, or why it cannot be shown; caption), for the keys found in one tar."""
    out: dict[str, tuple[Any, str]] = {}
    wanted = set(keys)
    try:
        with fsspec.open(url, "rb") as f:
            for entry in [e for e in index_pairs(f, require_caption=False, keep_repeated=True) if e.key in wanted]:
                decoded = decode_image(read_span(f, entry.image))
                image = decoded if not isinstance(decoded, ImageProblem) else f"({decoded.reason})"
                caption = read_span(f, entry.caption).decode("utf-8", "replace") if entry.caption else "(no caption)"
                out[entry.key] = (image, caption)
    except Exception as err:  # an input moved or unreadable since the run: no thumbnail, said so
        log.info("report: no images from %s (%s: %s)", url, type(err).__name__, err)
    return out


def images_for(where: dict[str, list[str]]) -> dict[str, tuple[Any, str]]:
    """{tar url: [keys]} -> key -> image (or why not). Only tars: parquet inputs and URL lists are
    not opened (a URL list's rejected images were never fetched)."""
    out: dict[str, tuple[Any, str]] = {}
    for url, keys in where.items():
        if url.endswith((".tar", ".tar.gz", ".tgz")):
            out.update(images_from_tar(url, keys))
    return out
