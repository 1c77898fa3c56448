"""URL lists in the formats img2dataset reads: parquet, csv, tsv, txt (one URL per line)."""

from __future__ import annotations

from pathlib import PurePosixPath

import fsspec
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

FORMATS = ("parquet", "csv", "tsv", "txt")


class UrlListError(ValueError):
    """A URL list that cannot be read as asked (format or column names)."""


def read_url_list(path: str, url_column: str = "url", caption_column: str | None = "caption") -> pa.Table:
    """A table with columns url and caption (null where the list has none), in the file's row order."""
    fmt = PurePosixPath(path).suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise UrlListError(f"{path}: URL lists are {', '.join(FORMATS)} files")
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
    return pa.table({"url": urls, "caption": captions})
