"""Input files to Samples: webdataset tar shards and parquet files with image bytes.

Plain Python (no Beam) so it is testable alone; pipelines/sources.py wraps it. Nothing in a file is
ever executed or extracted to disk: members are read into memory, one record at a time, and
everything unreadable comes out as a Rejection of stage `read` with a reason.
"""

from __future__ import annotations

import json
import math
import tarfile
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

import fsspec

from filters.record_checks import caption_problem, metadata_problem
from filters.sample import Rejection, Sample
from manifests.shard_format import KEY_RULE_TEXT, image_member, iter_tar_records, valid_key

if TYPE_CHECKING:
    from manifests.recipe import InputConfig

STAGE = "read"
Record = Sample | Rejection


def read_file(path: str, config: InputConfig) -> Iterator[Record]:
    """Every record of one input file, as Samples or Rejections (never raises for bad data)."""
    suffix = "".join(PurePosixPath(path).suffixes[-2:]).lower()
    if suffix.endswith(".parquet"):
        yield from _guard(path, read_parquet(path, config))
    elif suffix.endswith((".tar", ".tar.gz", ".tgz")):
        yield from _guard(path, read_tar(path, config))
    else:
        yield _file_rejection(path, "file_unsupported", "expected .tar, .tar.gz or .parquet")


def _guard(path: str, records: Iterator[Record]) -> Iterator[Record]:
    """A file that breaks mid-way keeps the records read so far; its unreadable rest is one rejection."""
    try:
        yield from records
    except (tarfile.TarError, EOFError, OSError, ValueError, ImportError) as err:
        yield _file_rejection(path, "file_unreadable", f"{type(err).__name__}: {err}")
    except Exception as err:  # pyarrow raises its own hierarchy; still a reason, never a crash
        yield _file_rejection(path, "file_unreadable", f"{type(err).__name__}: {err}")


def _file_rejection(path: str, reason: str, detail: str) -> Rejection:
    # Counts as one input record: the samples it held (if any) are unknowable.
    return Rejection(f"{PurePosixPath(path).name}#unreadable", path, None, STAGE, reason, detail)


# ---------------------------------------------------------------- webdataset tar
def read_tar(path: str, config: InputConfig) -> Iterator[Record]:
    with fsspec.open(path, "rb") as raw:
        for found in iter_tar_records(raw, config.max_member_bytes):
            yield guarded_record(path, found.key, _record, path, found.key, found.parts, found.problems, config)


def guarded_record(path: str, key: Any, build, *args, kind: str = Sample.KIND):
    """One record's construction; whatever it raises is that record's rejection (of `kind`, so
    accounting balances per kind), not its file's."""
    try:
        return build(*args)
    except Exception as err:
        return Rejection.for_error(key, path, None, STAGE, err, kind)


def _no_number(_constant: str) -> None:
    """NaN, Infinity, -Infinity in KEY.json (Python writes them, JSON has none): read as null, so the
    KEY.json written for the sample is JSON that strict readers (pyarrow, duckdb, JavaScript) take."""
    return None


def _finite(text: str) -> float | None:
    value = float(text)  # 1e400 is inf
    return value if math.isfinite(value) else None


def _record(path: str, key: str, parts: dict[str, bytes], problems: list[tuple[str, str]],
            config: InputConfig) -> Record:
    meta: dict[str, Any] = {}
    if "json" in parts:
        try:
            loaded = json.loads(parts["json"].decode("utf-8"), parse_constant=_no_number, parse_float=_finite)
        except (UnicodeDecodeError, ValueError, RecursionError) as err:  # ValueError: also 5,000-digit ints
            return Rejection(key, path, None, STAGE, "metadata_invalid_json", f"{type(err).__name__}: {err}"[:500])
        if not isinstance(loaded, dict):
            return Rejection(key, path, None, STAGE, "metadata_invalid_json", "KEY.json is not an object")
        problem = metadata_problem(loaded, config.max_json_depth)
        if problem:
            return Rejection(key, path, None, STAGE, *problem)
        meta = loaded
    url = meta.get("url") if isinstance(meta.get("url"), str) else None
    if not valid_key(key):
        return Rejection(key, path, url, STAGE, "key_invalid", KEY_RULE_TEXT)
    if problems:
        reason, detail = problems[0]
        return Rejection(key, path, url, STAGE, reason, detail)
    caption = None
    if "txt" in parts:
        try:
            caption = parts["txt"].decode("utf-8")
        except UnicodeDecodeError as err:
            return Rejection(key, path, url, STAGE, "caption_not_utf8", str(err))
        if problem := caption_problem(caption, config.max_caption_chars):
            return Rejection(key, path, url, STAGE, *problem)
    image_ext = image_member(parts, config.image_extensions)
    image = parts.get(image_ext) if image_ext else None
    return Sample(key=key, source=path, image=image, image_ext=image_ext, caption=caption, url=url, meta=meta)


# ---------------------------------------------------------------- parquet with image bytes
def read_parquet(path: str, config: InputConfig) -> Iterator[Record]:
    import pyarrow.parquet as pq

    columns = config.parquet
    stem = PurePosixPath(path).name.split(".")[0]
    with fsspec.open(path, "rb") as raw:
        table_file = pq.ParquetFile(raw)
        names = set(table_file.schema_arrow.names)
        image_col = next((c for c in columns.image if c in names), None)
        if image_col is None:
            yield _file_rejection(
                path, "file_no_image_column",
                f"none of {list(columns.image)} in {sorted(names)}; is this img2dataset's metadata parquet? "
                "Match only the .tar files, or set input.parquet.image in the recipe",
            )
            return
        caption_col = next((c for c in columns.caption if c in names), None)
        row = 0
        for batch in table_file.iter_batches(batch_size=256):
            for values in batch.to_pylist():
                key = values.get(columns.key)
                key = str(key) if key is not None else f"{stem}_{row:09d}"
                row += 1
                yield guarded_record(path, key, _parquet_record, path, key, values, image_col, caption_col, config)


def _parquet_record(path: str, key: str, values: dict[str, Any], image_col: str, caption_col: str | None,
                    config: InputConfig) -> Record:
    url = values.get(config.parquet.url) if isinstance(values.get(config.parquet.url), str) else None
    if not valid_key(key):
        return Rejection(key, path, url, STAGE, "key_invalid", KEY_RULE_TEXT)
    caption = values.get(caption_col) if caption_col else None
    if isinstance(caption, bytes):
        try:
            caption = caption.decode("utf-8")
        except UnicodeDecodeError as err:
            return Rejection(key, path, url, STAGE, "caption_not_utf8", str(err))
    if caption is not None and not isinstance(caption, str):
        return Rejection(key, path, url, STAGE, "caption_invalid_type",
                         f"column {caption_col!r} holds {type(caption).__name__}, not text")
    if problem := caption_problem(caption, config.max_caption_chars):
        return Rejection(key, path, url, STAGE, *problem)
    image = values.get(image_col)
    if image is not None and not isinstance(image, bytes):
        return Rejection(key, path, url, STAGE, "image_invalid_type",
                         f"column {image_col!r} holds {type(image).__name__}, not bytes")
    meta = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)  # NaN: null, as from KEY.json
            for k, v in values.items() if k not in (image_col, caption_col) and _json_safe(v)}
    ext = image_col if image_col in ("jpg", "png", "webp") else None
    return Sample(key=key, source=path, image=image, image_ext=ext, caption=caption, url=url, meta=meta)


def _json_safe(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))
