"""Write one curated shard: NNNNN.tar (KEY.jpg/.txt/.json, webdataset layout) and NNNNN.parquet.

Both go through atomic_open: a run killed mid-write leaves only a hidden temporary file, never a
complete-looking shard. Tar headers carry no time or owner, so the same samples give the same bytes
(and the same sha256) on every run and retry.
"""

from __future__ import annotations

import io
import json
import tarfile
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from filters.image_format import extension_for
from filters.sample import Sample
from manifests.storage import atomic_open

SHARDS_DIR = "shards"


def shard_json(sample: Sample) -> dict[str, Any]:
    """KEY.json: the record's own metadata with vlcurate's annotations on top."""
    return {**sample.meta, "key": sample.key, "url": sample.url, "caption": sample.caption, **sample.annotations}


def add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def write_shard(root: str, index: int, samples: list[Sample]) -> dict[str, Any]:
    """Writes the parquet first and the tar last: the tar's presence means the shard is whole."""
    name = f"{SHARDS_DIR}/{index:05d}"
    rows = []
    for sample in samples:
        meta = shard_json(sample)
        ext = sample.image_ext or extension_for(sample.image or b"")
        rows.append({
            "key": sample.key,
            "url": sample.url,
            "caption": sample.caption,
            "source": sample.source,
            "image_ext": ext if sample.image is not None else None,
            "image_bytes": len(sample.image) if sample.image is not None else None,
            "json": json.dumps(meta, ensure_ascii=False, sort_keys=True),
        })
    table = pa.Table.from_pylist(rows, schema=_SCHEMA)
    for vector_name, column in _vector_columns(samples).items():
        table = table.append_column(vector_name, column)
    buffer = io.BytesIO()  # metadata is small; buffering keeps pyarrow away from our file wrapper
    pq.write_table(table, buffer)
    with atomic_open(f"{root}/{name}.parquet") as out:
        out.write(buffer.getvalue())
    parquet = {"name": f"{name}.parquet", "bytes": out.bytes, "sha256": out.sha256.hexdigest()}

    with atomic_open(f"{root}/{name}.tar") as out:
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for sample, row in zip(samples, rows):
                if sample.image is not None:
                    add_member(tar, f"{sample.key}.{row['image_ext']}", sample.image)
                if sample.caption is not None:
                    add_member(tar, f"{sample.key}.txt", sample.caption.encode("utf-8"))
                add_member(tar, f"{sample.key}.json", row["json"].encode("utf-8"))
    return {"name": f"{name}.tar", "samples": len(samples), "bytes": out.bytes,
            "sha256": out.sha256.hexdigest(), "metadata": parquet}


def _vector_columns(samples: list[Sample]) -> dict[str, pa.Array]:
    """Embeddings as fixed-size float16 list columns (null where a sample has none)."""
    columns = {}
    for name in sorted({n for s in samples for n in s.vectors}):
        dims = {len(s.vectors[name]) // 2 for s in samples if name in s.vectors}
        if len(dims) != 1:
            raise ValueError(f"vector {name!r} has mixed lengths {sorted(dims)} within one shard")
        (dim,) = dims
        zero = np.zeros(dim, dtype="<f2")
        flat = np.concatenate([np.frombuffer(s.vectors[name], "<f2") if name in s.vectors else zero for s in samples])
        mask = pa.array([name not in s.vectors for s in samples])
        values = pa.array(flat, type=pa.float16())
        columns[name] = pa.FixedSizeListArray.from_arrays(values, dim, mask=mask)
    return columns


_SCHEMA = pa.schema([
    ("key", pa.string()),
    ("url", pa.string()),
    ("caption", pa.string()),
    ("source", pa.string()),
    ("image_ext", pa.string()),
    ("image_bytes", pa.int64()),
    ("json", pa.string()),
])
