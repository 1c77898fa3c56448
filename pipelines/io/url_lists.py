"""URL lists in the formats img2dataset reads: parquet, csv, tsv, txt (one URL per line)."""

from __future__ import annotations

from pathlib import PurePosixPath

import fsspec
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

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


def read_url_list(path: str, url_column: str = "url", caption_column: str | None = "caption") -> pa.Table:
    """A table with columns url and caption (null where the list has none) and the list's other scalar
    columns, in the file's row order."""
    fmt = _format(path)
    with fsspec.open(path, "rb") as f:
        if fmt == "parquet":
            table = pq.read_table(f)
        elif fmt in ("csv", "tsv"):
            table = pa_csv.read_csv(f, parse_options=pa_csv.ParseOptions(delimiter="," if fmt == "csv" else "\t"),
                                    convert_options=pa_csv.ConvertOptions(strings_can_be_null=True))
        else:
            lines = f.read().decode("utf-8", errors="replace").splitlines()
            return pa.table({"url": [ln.strip() for ln in lines if ln.strip()],
                             "caption": pa.nulls(sum(1 for ln in lines if ln.strip()), pa.string())})
    names = table.column_names
    if url_column not in names:
        raise UrlListError(f"{path}: no column {url_column!r} (columns: {', '.join(names)}); set download.url_column")
    if caption_column is not None and caption_column not in names:
        raise UrlListError(f"{path}: no column {caption_column!r} (columns: {', '.join(names)}); "
                           "set download.caption_column, or null for none")
    urls = table.column(url_column).cast(pa.string())
    captions = (table.column(caption_column).cast(pa.string()) if caption_column
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
        columns[f"input_{name}" if name in IMG2DATASET_FIELDS or name in columns else name] = column
    return pa.table(columns)
