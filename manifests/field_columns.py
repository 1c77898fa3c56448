"""KEY.json's top-level scalar fields as typed parquet columns.

People join curated sets with other metadata by the columns they brought (DataComp's `uid`, a
`license`, a `width`) and filter by the scores stages computed (`clip_score`, `caption_lang`). Both
live in KEY.json; this makes each top-level field whose values are all scalars a column of the same
name, so `pyarrow.dataset`, duckdb and HF `datasets` see them without parsing JSON. Fields holding
lists or objects stay in the `json` column only.

Types come from the values: all bool -> bool, all int within int64 -> int64, ints and floats ->
float64, all str -> string; any other mix, and a field that is null in every row, -> string (JSON
text for non-strings). A shard sees only its own rows, so its columns can differ from another's (a
field rare enough to miss a shard, null in one and int in another): table_union.py settles one
schema for the whole run once every shard exists, from the names each shard records here.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

# parquet schema metadata of each metadata table: its field columns, and the fields kept in `json` only
FIELD_COLUMNS_KEY, JSON_ONLY_KEY = "vlcurate.field_columns", "vlcurate.json_only"
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


def column_of(values: list[Any], kind: pa.DataType | None = None) -> pa.Array:
    """Scalar field values as a column of `kind` (default: the type their values call for)."""
    kind = _column_type(values) if kind is None else kind
    if kind == pa.string():
        values = [_as_text(v) for v in values]
    elif kind == pa.float64():
        values = [None if v is None else float(v) for v in values]
    return pa.array(values, type=kind)


def common_type(kinds: list[tuple[pa.DataType, bool]]) -> pa.DataType:
    """One type for a field column written per shard as (type, whether every row was null): the
    type _column_type gives the union of the values, from the shards' types alone (all-null shards
    say nothing; int64 with float64 -> float64 is left to the caller's range check)."""
    seen = {kind for kind, all_null in kinds if not all_null}
    if len(seen) == 1:
        return seen.pop()
    if seen == {pa.int64(), pa.float64()}:
        return pa.float64()
    return pa.string()


def field_columns(fields: list[dict[str, Any]], taken: set[str]) -> tuple[dict[str, pa.Array], list[str]]:
    """(name -> column for every field that is scalar in all rows, names kept in `json` only: a
    list or object in some row, or past MAX_FIELD_COLUMNS). Names in `taken` (the fixed columns)
    and names that are not text are skipped."""
    names = sorted({k for f in fields for k in f if isinstance(k, str) and k and k not in taken})
    columns: dict[str, pa.Array] = {}
    json_only = []
    for name in names:
        values = [f.get(name) for f in fields]
        if not all(_scalar(v) for v in values) or len(columns) == MAX_FIELD_COLUMNS:
            json_only.append(name)
            continue
        columns[name] = column_of(values)
    return columns, json_only
