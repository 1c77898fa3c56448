"""One schema for every metadata table of a run, settled once every shard exists.

Each shard's parquet (metadata/NNNNN.parquet) is written by the worker that wrote the shard, from
that shard's rows alone: a field rare enough to miss a shard (`image_claimed_size_ignored`) is no
column there, a field null in every row of one shard is string there and int64 in the next, a
vector or GRIT column exists only where some sample had one. Readers that take a directory as one
table then break: HF's parquet builder refuses files whose columns differ, pyarrow.dataset drops
columns missing from its first file (or fails on a cast), duckdb fails on a column its first file
lacks. So the curate driver calls `unify_tables` before the manifest: it reads every footer (names,
types, null counts, int ranges; no rows), decides one schema, and rewrites only the tables that
differ (atomically, a few ms for 1,000 rows), returning their new sizes and checksums.

The rules follow field_columns.py's, from the shards' types (the rows are not re-read): a field that
was a list or object in any shard stays in `json` only everywhere, and so does one named like
another shard's own column (a vector, GRIT's); a field column's type is common_type() of the
shards' types (int64 with float64 -> float64 unless an int is past 2**53, then string; a shard's
float64 values become "1.0" there, where the union's rows would have given "1"); a missing column
is all null. Vectors of different lengths in two shards (two models: the sink allows one length per
shard) cannot be one column: those tables keep their schema, with a warning.
"""

from __future__ import annotations

import io
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from manifests.field_columns import FIELD_COLUMNS_KEY, JSON_ONLY_KEY, MAX_FIELD_COLUMNS, column_of, common_type
from manifests.storage import atomic_write_bytes

log = logging.getLogger(__name__)
_EXACT_IN_FLOAT = 1 << 53


def _footer(url: str) -> dict[str, Any] | None:
    """Names, types and facts of one table from its footer; None if vlcurate's field metadata is
    absent (not a pair table)."""
    with fsspec.open(url, "rb") as f:
        meta = pq.ParquetFile(f).metadata
    schema = meta.schema.to_arrow_schema()
    tags = schema.metadata or {}
    if FIELD_COLUMNS_KEY.encode() not in tags:
        return None
    all_null, wide_int = set(), set()
    for i, name in enumerate(schema.names):
        nulls, big, known = 0, False, True
        for g in range(meta.num_row_groups):
            stats = meta.row_group(g).column(i).statistics
            if stats is None or not stats.has_null_count:
                known = False
                break
            nulls += stats.null_count
            if stats.has_min_max and pa.types.is_integer(schema.field(name).type):
                big |= max(abs(stats.min), abs(stats.max)) >= _EXACT_IN_FLOAT
        if known and nulls == meta.num_rows:
            all_null.add(name)
        if big or (not known and pa.types.is_integer(schema.field(name).type)):
            wide_int.add(name)
    return {"schema": schema, "fields": json.loads(tags[FIELD_COLUMNS_KEY.encode()]),
            "json_only": json.loads(tags[JSON_ONLY_KEY.encode()]), "all_null": all_null, "wide_int": wide_int}


def _target(footers: list[dict[str, Any]]) -> pa.Schema:
    # the shard format's own columns, vectors, GRIT: in first-seen order, typed by a shard with values
    fixed: dict[str, pa.DataType] = {}
    typed: set[str] = set()
    for footer in footers:
        for field in footer["schema"]:
            if field.name in footer["fields"]:
                continue
            has_values = field.name not in footer["all_null"]
            if field.name not in fixed or (has_values and field.name not in typed):
                fixed[field.name] = field.type  # an update keeps the name's first position
            if has_values:
                typed.add(field.name)
    # A KEY.json field named like another shard's own column (an input's `noun_chunks: null` beside
    # grounded shards) stays in `json`: one name, one column.
    json_only = sorted({n for f in footers for n in f["json_only"]} | ({n for f in footers for n in f["fields"]} & set(fixed)))
    names = sorted({n for f in footers for n in f["fields"]} - set(json_only))
    json_only = sorted({*json_only, *names[MAX_FIELD_COLUMNS:]})
    names = names[:MAX_FIELD_COLUMNS]
    columns = []
    for name in names:
        kinds = [(f["schema"].field(name).type, name in f["all_null"]) for f in footers if name in f["fields"]]
        kind = common_type(kinds)
        if kind == pa.float64() and any(name in f["wide_int"] for f in footers if name in f["fields"]):
            kind = pa.string()  # an int past 2**53 would change as a float
        columns.append(pa.field(name, kind))
    metadata = {FIELD_COLUMNS_KEY: json.dumps(names), JSON_ONLY_KEY: json.dumps(json_only)}
    return pa.schema([pa.field(n, t) for n, t in fixed.items()] + columns, metadata=metadata)


def _conform(data: bytes, target: pa.Schema, own_fields: list[str]) -> bytes:
    table = pq.read_table(io.BytesIO(data))
    fields = set(json.loads(target.metadata[FIELD_COLUMNS_KEY.encode()]))
    columns = []
    for field in target:
        if field.name not in table.column_names or (field.name in own_fields and field.name not in fields):
            # absent here, or here a KEY.json field where the run has a column of that name: its
            # values are still in `json`
            columns.append(pa.nulls(table.num_rows, type=field.type))
        elif table.schema.field(field.name).type == field.type:
            columns.append(table.column(field.name))
        elif field.name in fields:  # the values again, typed as the run's column
            columns.append(column_of(table.column(field.name).to_pylist(), field.type))
        else:  # not a field (a vector of another length?): left as written, the caller logs it
            raise ValueError(f"column {field.name!r} is {table.schema.field(field.name).type} here, "
                             f"{field.type} in other shards")
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_arrays(columns, schema=target), buffer)
    return buffer.getvalue()


def _same(schema: pa.Schema, target: pa.Schema) -> bool:
    tags = schema.metadata or {}
    return schema.equals(target) and all(tags.get(k) == target.metadata[k] for k in
                                         (FIELD_COLUMNS_KEY.encode(), JSON_ONLY_KEY.encode()))


def unify_tables(root: str, shards: list[dict[str, Any]], threads: int = 8) -> int:
    """Give every shard's metadata table one schema; updates each rewritten table's entry
    (`bytes`, `sha256`) in `shards` in place. Returns how many tables were rewritten."""
    entries = [s["metadata"] for s in shards if s.get("metadata")]
    with ThreadPoolExecutor(threads, thread_name_prefix="unify_tables") as pool:
        footers = list(pool.map(lambda e: _footer(f"{root}/{e['name']}"), entries))
    ours = [(e, f) for e, f in zip(entries, footers) if f is not None]
    if len(ours) < 2:
        return 0
    target = _target([f for _, f in ours])

    def rewrite(entry: dict[str, Any], footer: dict[str, Any]) -> bool:
        url = f"{root}/{entry['name']}"
        with fsspec.open(url, "rb") as f:
            data = f.read()
        try:
            conformed = _conform(data, target, footer["fields"])
        except ValueError as e:
            log.warning("%s keeps its own schema: %s", entry["name"], e)
            return False
        entry.update(atomic_write_bytes(url, conformed))
        return True

    todo = [(e, f) for e, f in ours if not _same(f["schema"], target)]
    with ThreadPoolExecutor(threads, thread_name_prefix="unify_tables") as pool:
        return sum(pool.map(lambda pair: rewrite(*pair), todo))
