"""Markers a reader leaves under RUN/_run/progress/ so the driver can draw progress bars
(pipelines/drivers/progress.py): one small JSON per input file, {records, done}, and one per stage
step and worker, {records}."""

from __future__ import annotations

import json
import logging
import os
import time

import fsspec

log = logging.getLogger("vlcurate")

PROGRESS_DIR = "_run/progress"
MARK_EVERY_S = 3.0  # how often a reader rewrites its marker while a big file (a 1 GB WARC) is read


def marker_url(root: str, index: int) -> str:
    return f"{root}/{PROGRESS_DIR}/read-{index:06d}.json"


def write_marker(root: str, index: int, records: int, done: bool) -> None:
    """Best effort: a marker that cannot be written costs the bar, never the run."""
    _write(marker_url(root, index), {"records": records, "done": done})


def _write(url: str, mark: dict) -> None:
    try:
        fs, path = fsspec.core.url_to_fs(url)
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)  # local folders; a no-op on object stores
        fs.pipe_file(path, json.dumps(mark).encode())
    except Exception as err:
        log.debug("progress marker %s not written: %s", url, err)


PROGRESS_ENV = "VLCURATE_PROGRESS_ROOT"  # set by the driver while bars are on; worker processes inherit it


class StageCounter:
    """Records one stage step has handled in this process, written to
    _run/progress/stage-STAGE-STEP-PID-ID.json every few seconds and at each bundle's end. Only
    where the driver set PROGRESS_ENV (local runners: their worker processes inherit it)."""

    def __init__(self, stage: str, step: str):
        root = os.environ.get(PROGRESS_ENV)
        self.url = f"{root}/{PROGRESS_DIR}/stage-{stage}-{step}-{os.getpid()}-{id(self):x}.json" if root else None
        self.records = 0
        self.marked = time.monotonic()

    def add(self, n: int) -> None:
        if self.url is None:
            return
        self.records += n
        if time.monotonic() - self.marked > MARK_EVERY_S:
            self.flush()

    def flush(self) -> None:
        if self.url is None:
            return
        self.marked = time.monotonic()
        _write(self.url, {"records": self.records})
