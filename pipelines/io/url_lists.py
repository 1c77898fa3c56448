"""URL lists in the formats img2dataset reads: parquet, csv, tsv, txt (one URL per line)."""

from __future__ import annotations

import logging
from pathlib import PurePosixPath

import fsspec
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

log = logging.getLogger("vlcurate")
FORMATS = ("parquet", "csv", "tsv", "txt")
# What img2dataset writes into each KEY.json itself (and vlcurate's row number): never overwritten.
IMG2DATASET_FIELDS = frozenset({"url", "caption", "key", "status", "error_message", "width", "height",
                                "original_width", "original_height", "exif", "sha256", "md5", "vlc_row"})


class UrlListError(ValueError):
    """A URL list that cannot be read as asked (format or column names)."""


def _format(path: str) -> str:
    fmt = PurePosixPath(path).suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise UrlListError(f"{path}: URL lists are {', '.join(FORMATS)} files")
    return fmt


def check_url_list(path: str) -> None:
    """Called before a run creates its output directory, so that a mistyped -i stops with one line
    and leaves nothing behind. Through fsspec: an s3:// or gs:// list is checked the same way."""
    _format(path)
    fs, fs_path = fsspec.core.url_to_fs(path)
    if not fs.isfile(fs_path):
        problem = "is a directory, not a file" if fs.isdir(fs_path) else "does not exist"
        raise UrlListError(f"the URL list {path} {problem}")


# Rows the list holds but that cannot be read as one (a CSV row with extra fields, a value that is
# not UTF-8): kept in the table, with what is wrong in this column, so each becomes a rejection.
ROW_PROBLEM = "_vlc_row_problem"


def read_url_list(path: str, url_column: str = "url", caption_column: str | None = "caption") -> pa.Table:
    """A table with columns url and caption (null where the list has none), the list's other scalar
    columns, and ROW_PROBLEM (null for good rows), in the file's row order; rows the CSV parser could
    not split come last. A file that cannot be read at all is a UrlListError (one line)."""
    fmt = _format(path)
    bad_rows: list[str] = []
    try:
        with fsspec.open(path, "rb") as f:
            if fmt == "parquet":
                _refuse_repeated_columns(path, pq.read_schema(f).names)  # read_table cannot name them
                f.seek(0)
                table = pq.read_table(f)
            elif fmt in ("csv", "tsv"):
                table = pa_csv.read_csv(f, parse_options=pa_csv.ParseOptions(
                    delimiter="," if fmt == "csv" else "\t", invalid_row_handler=_collect(bad_rows)),
                    convert_options=pa_csv.ConvertOptions(strings_can_be_null=True))
            else:
                lines = f.read().decode("utf-8", errors="replace").splitlines()
                urls = [ln.strip() for ln in lines if ln.strip()]
                return pa.table({"url": urls, "caption": pa.nulls(len(urls), pa.string()),
                                 ROW_PROBLEM: pa.nulls(len(urls), pa.string())})
    except (pa.ArrowInvalid, OSError) as err:  # empty, not a CSV/parquet, unreadable
        if isinstance(err, FileNotFoundError):
            raise
        raise UrlListError(f"{path}: cannot be read as {fmt} ({str(err).splitlines()[0][:200]})") from None
    names = table.column_names
    _refuse_repeated_columns(path, names)
    if url_column not in names:
        raise UrlListError(f"{path}: no column {url_column!r} (columns: {', '.join(names)}); set download.url_column")
    if caption_column is not None and caption_column not in names:
        raise UrlListError(f"{path}: no column {caption_column!r} (columns: {', '.join(names)}); "
                           "set download.caption_column, or null for none")
    problems: list[str | None] = [None] * table.num_rows
    urls = _text(table.column(url_column), url_column, problems)
    captions = (_text(table.column(caption_column), caption_column, problems) if caption_column
                else pa.nulls(table.num_rows, pa.string()))
    columns = {"url": urls, "caption": captions}
    # The list's other columns (DataComp's uid, a license, ...) travel with each URL into KEY.json
    # under their own names; one that img2dataset writes itself is kept as input_<name>.
    for name in names:
        if name in (url_column, caption_column):
            continue
        column = table.column(name)
        if pa.types.is_nested(column.type) or pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
            continue  # lists, structs and bytes do not belong in KEY.json
        columns[f"input_{name}" if name in IMG2DATASET_FIELDS or name in columns else name] = _json_safe(column)
    columns[ROW_PROBLEM] = pa.array(problems, pa.string())
    table = pa.table(columns)
    if fmt in ("csv", "tsv"):
        spans = sum(1 for v in [*urls.to_pylist(), *captions.to_pylist()] if v and "\n" in v)
        if spans:  # legal CSV, but in a URL list it is almost always a quote left open
            log.warning("%s: %d value(s) span several lines: an unmatched '\"' joins the lines after it into one "
                        "row (check the list's quoting)", path, spans)
    if bad_rows:  # at the end, with every other column null
        extra = {name: pa.nulls(len(bad_rows), table.schema.field(name).type) for name in table.column_names}
        extra[ROW_PROBLEM] = pa.array(bad_rows, pa.string())
        table = pa.concat_tables([table, pa.table(extra, schema=table.schema)])
    return table


def _refuse_repeated_columns(path: str, names: list[str]) -> None:
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UrlListError(f"{path}: column {twice[0]!r} appears more than once; name each column once")


def _collect(bad_rows: list[str]):
    def handler(row) -> str:
        where = f"CSV row {row.number}" if row.number is not None else "a CSV row"
        bad_rows.append(f"{where} has {row.actual_columns} fields where the header has {row.expected_columns} "
                        f"(an unquoted delimiter?): {row.text[:200]!r}")
        return "skip"
    return handler


def _text(column: pa.ChunkedArray, name: str, problems: list[str | None]) -> pa.ChunkedArray:
    """The column as strings. A CSV column with bytes that are not UTF-8 arrives as binary: its
    values that decode are kept, the others are their row's problem."""
    if not (pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type)):
        return column.cast(pa.string())
    values = []
    for row, raw in enumerate(column.to_pylist()):
        try:
            values.append(None if raw is None else raw.decode("utf-8"))
        except UnicodeDecodeError:
            values.append(None)
            problems[row] = problems[row] or f"column {name!r} is not UTF-8 text: {raw[:80]!r}"
    return pa.chunked_array([pa.array(values, pa.string())])


def _json_safe(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Values KEY.json can hold: dates, times, timestamps, durations and decimals as their text
    (`2024-05-01`, `2024-05-01 12:00:00`, `1 day, 0:00:00`, `1.00`); img2dataset json.dumps them and
    failed on every row that had one, as download_incomplete."""
    kind = column.type
    if pa.types.is_dictionary(kind):
        return _json_safe(column.cast(kind.value_type))
    if pa.types.is_temporal(kind) or pa.types.is_decimal(kind):
        return pa.chunked_array([pa.array([None if v is None else str(v) for v in column.to_pylist()], pa.string())])
    if pa.types.is_float16(kind):
        return column.cast(pa.float32())
    return column
