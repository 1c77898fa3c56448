"""KEY.json's top-level scalar fields as typed parquet columns.

People join curated sets with other metadata by the columns they brought (DataComp's `uid`, a
`license`, a `width`) and filter by the scores stages computed (`clip_score`, `caption_lang`). Both
live in KEY.json; this makes each top-level field whose values are all scalars a column of the same
name, so `pyarrow.dataset`, duckdb and HF `datasets` see them without parsing JSON. Fields holding
lists or objects stay in the `json` column only.

Types come from the values, the same way in every shard so shards concatenate: all bool -> bool,
all int within int64 -> int64, ints and floats -> float64, all str -> string; any other mix, and a
field that is null in every row of a shard, -> string (JSON text for non-strings).
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

MAX_FIELD_COLUMNS = 256  # beyond this many names (sorted), fields stay in `json` only: hostile input cannot blow up a schema
_INT64 = (-(1 << 63), (1 << 63) - 1)


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _column_type(values: list[Any]) -> pa.DataType:
    kinds = {type(v) for v in values if v is not None}
    if kinds == {bool}:
        return pa.bool_()
    if kinds == {int} and all(_INT64[0] <= v <= _INT64[1] for v in values if v is not None):
        return pa.int64()
    if kinds and kinds <= {int, float} and all(isinstance(v, float) or abs(v) < 1 << 53 for v in values if v is not None):
        return pa.float64()
    return pa.string()


def _as_text(value: Any) -> str | None:
    return value if value is None or isinstance(value, str) else json.dumps(value)


def field_columns(fields: list[dict[str, Any]], taken: set[str]) -> dict[str, pa.Array]:
    """name -> column for every field that is scalar in all rows, skipping names in `taken` (the
    fixed columns) and names that are not text."""
    names = sorted({k for f in fields for k in f if isinstance(k, str) and k and k not in taken})
    columns: dict[str, pa.Array] = {}
    for name in names:
        values = [f.get(name) for f in fields]
        if not all(_scalar(v) for v in values):
            continue
        if len(columns) == MAX_FIELD_COLUMNS:
            break
        kind = _column_type(values)
        if kind == pa.string():
            values = [_as_text(v) for v in values]
        elif kind == pa.float64():
            values = [None if v is None else float(v) for v in values]
        columns[name] = pa.array(values, type=kind)
    return columns
