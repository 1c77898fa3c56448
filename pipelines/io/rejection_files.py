"""The rejection table on disk: REJECTED_DIR/STAGE-NNNNN.parquet, one row per dropped record."""

from __future__ import annotations

import io
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from filters.sample import Rejection
from manifests.storage import atomic_open

REJECTED_DIR = "rejected"
REJECTION_SCHEMA = pa.schema([
    ("key", pa.string()),
    ("source", pa.string()),
    ("url", pa.string()),
    ("stage", pa.string()),
    ("reason", pa.string()),
    ("detail", pa.string()),
    ("kind", pa.string()),  # the kind of record rejected: sample, document
    ("scores", pa.string()),  # JSON: what stages had measured on it (clip_score, caption_words, ...), or null
])


def write_rejection_part(root: str, stage: str, part: int, rejections: list[Rejection]) -> dict[str, Any]:
    """One parquet file, rows sorted by key, written atomically; its manifest entry."""
    rows = sorted((r.as_row() for r in rejections), key=lambda row: (row["key"], row["source"]))
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=REJECTION_SCHEMA), buffer)
    name = f"{REJECTED_DIR}/{stage}-{part:05d}.parquet"
    with atomic_open(f"{root}/{name}") as out:
        out.write(buffer.getvalue())
    return {"name": name, "rows": len(rows), "bytes": out.bytes, "sha256": out.sha256.hexdigest()}


def write_rejection_files(root: str, stage: str, rejections: list[Rejection], rows_per_file: int) -> list[dict]:
    """All of a stage's rejections, outside Beam (the download driver), in parts of rows_per_file."""
    ordered = sorted(rejections, key=lambda r: (r.key, r.source))
    return [write_rejection_part(root, stage, i // rows_per_file, ordered[i : i + rows_per_file])
            for i in range(0, len(ordered), rows_per_file)]
