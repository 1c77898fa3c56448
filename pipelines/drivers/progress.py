"""Progress bars for long steps, seen from the driver.

Beam's local runners run the whole pipeline inside `Pipeline.run()`, and img2dataset runs in its
own processes, so the driver cannot ask either how far it got while it runs. Both leave files
behind as they go: the reader's markers under RUN/_run/progress/ (pipelines/io/progress_markers.py),
the shards the sink writes, img2dataset's NNNNN_stats.json per finished shard. A thread of the
driver polls them (any fsspec URL: Dataflow workers write them too) and draws rich bars with rates
and ETAs. `--quiet` turns the bars off.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO

import fsspec

from manifests.storage import glob_under
from pipelines.io.progress_markers import PROGRESS_DIR, PROGRESS_ENV

log = logging.getLogger("vlcurate")

Poll = Callable[[], dict[str, tuple[int, str]]]  # task -> (completed, detail)


class PolledBars:
    """Context manager: one bar per task (name -> total, None when unknown), updated from `poll`
    every `poll_s` seconds by a thread; nothing at all when not `enabled`."""

    def __init__(self, tasks: dict[str, int | None], poll: Poll, enabled: bool = True, poll_s: float = 1.0,
                 stream: IO[str] | None = None):
        self.tasks, self.poll, self.enabled, self.poll_s, self.stream = tasks, poll, enabled, poll_s, stream
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PolledBars:
        if self.enabled:
            self._thread = threading.Thread(target=self._watch, name="vlcurate-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _watch(self) -> None:
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        console = Console(file=self.stream) if self.stream is not None else None
        columns = (TextColumn("{task.description:<12}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), TimeRemainingColumn())
        with Progress(*columns, console=console) as bars:
            ids = {name: bars.add_task(name, total=total, detail="") for name, total in self.tasks.items()}
            stopping = False
            while not stopping:
                stopping = self._stop.wait(self.poll_s)  # one last poll after the step ends: final counts
                try:
                    state = self.poll()
                except Exception as err:  # a listing that failed: the step goes on, the bar waits
                    log.debug("progress poll failed: %s", err)
                    continue
                for name, (completed, detail) in state.items():
                    bars.update(ids[name], completed=completed, detail=detail)


def _marks(fs, directory: str, pattern: str) -> Iterator[tuple[str, dict]]:
    """(path, content) of the JSON files matching `pattern` in `directory`; one being rewritten right
    now is read at the next poll."""
    fs.invalidate_cache()
    for path in glob_under(fs, directory, pattern):
        try:
            with fs.open(path, "rt") as f:
                yield path, json.load(f)
        except (OSError, ValueError):
            continue


def _totals(fs, directory: str, pattern: str, *fields: str) -> list[int]:
    totals = [0] * len(fields)
    for _, found in _marks(fs, directory, pattern):
        totals = [t + int(found.get(name, 0)) for t, name in zip(totals, fields)]
    return totals


def _rate(n: int, started: float) -> str:
    return f"{n / max(time.monotonic() - started, 1e-6):,.0f}/s"


def _stage_records(fs, base: str) -> dict[str, int]:
    """stage -> records its busiest step handled (summed over workers)."""
    per_step: dict[tuple[str, str], int] = {}
    for path, found in _marks(fs, f"{base}/{PROGRESS_DIR}", "stage-*.json"):
        stage, step = path.rsplit("/", 1)[-1].split("-")[1:3]
        per_step[(stage, step)] = per_step.get((stage, step), 0) + int(found.get("records", 0))
    stages: dict[str, int] = {}
    for (stage, _), n in per_step.items():
        stages[stage] = max(stages.get(stage, 0), n)
    return stages


@contextmanager
def run_progress(root: str, files: int, stages: list[str], enabled: bool = True) -> Iterator[PolledBars]:
    """Input files read (records, records/s, ETA), records each stage handled (records/s), shards
    written, for a curate run in `root`. Stage steps find the run directory in PROGRESS_ENV."""
    fs, base = fsspec.core.url_to_fs(root)
    started = time.monotonic()

    def poll() -> dict[str, tuple[int, str]]:
        done, records = _totals(fs, f"{base}/{PROGRESS_DIR}", "read-*.json", "done", "records")
        state = {"read files": (done, f"{records:,} records, {_rate(records, started)}")}
        for stage, n in _stage_records(fs, base).items():
            if stage in stages:
                state[stage] = (n, f"{_rate(n, started)}")
        state["write shards"] = (len(glob_under(fs, f"{base}/shards", "[0-9]*.tar")), "")
        return state

    tasks = {"read files": files, **{stage: None for stage in stages}, "write shards": None}
    saved = os.environ.get(PROGRESS_ENV)
    if enabled:
        os.environ[PROGRESS_ENV] = root
    try:
        with PolledBars(tasks, poll, enabled) as bars:
            yield bars
    finally:
        if saved is None:
            os.environ.pop(PROGRESS_ENV, None)
        else:
            os.environ[PROGRESS_ENV] = saved


def download_progress(shards_url: str, urls: int, enabled: bool = True, stream: IO[str] | None = None) -> PolledBars:
    """URLs tried and images kept, from img2dataset's per-shard stats files, over the whole list."""
    fs, base = fsspec.core.url_to_fs(shards_url)
    started = time.monotonic()

    def poll() -> dict[str, tuple[int, str]]:
        tried, kept = _totals(fs, base, "*_stats.json", "count", "successes")
        return {"download": (tried, f"{kept:,} images kept, {_rate(tried, started)} URLs")}

    return PolledBars({"download": urls}, poll, enabled, stream=stream)


@contextmanager
def output_to_file(path: str) -> Iterator[IO[str]]:
    """Send this process's stdout/stderr, and its children's, to `path` (img2dataset prints a line
    per shard from its own processes); yields a stream to the real terminal, for the bars."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    saved_streams = sys.stdout, sys.stderr
    terminal = os.fdopen(os.dup(saved_err), "w")
    with open(path, "ab") as sink:
        os.dup2(sink.fileno(), 1)  # child processes write to the descriptors
        os.dup2(sink.fileno(), 2)
    log_file = open(path, "a", buffering=1)  # this process's print() and tqdm write to sys.stdout/err
    sys.stdout = sys.stderr = log_file
    try:
        yield terminal
    finally:
        sys.stdout, sys.stderr = saved_streams
        log_file.close()
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        os.close(saved_out)
        os.close(saved_err)
        terminal.close()
