"""Markers a reader leaves under RUN/_run/progress/ so the driver can draw progress bars
(pipelines/drivers/progress.py): one small JSON per input file, {records, done}."""

from __future__ import annotations

import json
import logging

import fsspec

log = logging.getLogger("vlcurate")

PROGRESS_DIR = "_run/progress"
MARK_EVERY_S = 3.0  # how often a reader rewrites its marker while a big file (a 1 GB WARC) is read


def marker_url(root: str, index: int) -> str:
    return f"{root}/{PROGRESS_DIR}/read-{index:06d}.json"


def write_marker(root: str, index: int, records: int, done: bool) -> None:
    """Best effort: a marker that cannot be written costs the bar, never the run."""
    try:
        fs, path = fsspec.core.url_to_fs(marker_url(root, index))
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)  # local folders; a no-op on object stores
        fs.pipe_file(path, json.dumps({"records": records, "done": done}).encode())
    except Exception as err:
        log.debug("progress marker %d not written: %s", index, err)
