"""Source: input files -> Reshuffle (a file is the unit of work) -> records, and read rejections.

The recipe's `input.kind` says what the files hold: image-text pairs (tars, parquets) read into
Samples, or web pages (WARC, HTML, url+html tables) read into Documents."""

from __future__ import annotations

import logging
import os
import time

import apache_beam as beam
from apache_beam.metrics import Metrics

from filters.document import Document
from filters.sample import Rejection, Sample
from manifests.recipe import InputConfig
from pipelines.beam import coders  # noqa: F401  (registers the record coders)
from pipelines.io.progress_markers import MARK_EVERY_S, write_marker
from pipelines.io.readers import read_file
from pipelines.io.web_readers import read_web_file

REJECTED = "rejected"
COUNTED = "counted"
log = logging.getLogger("vlcurate")


class _ReadFileFn(beam.DoFn):
    """Reads whole files; with `limit`, one element holds every file and reading stops after `limit`
    records in file order (`--limit`: the first N records, the same ones every time)."""

    def __init__(self, config: InputConfig, progress_root: str | None = None, limit: int | None = None):
        self.config = config
        self.kind = config.kind
        self.progress_root = progress_root
        self.limit = limit
        self.records = Metrics.counter("read", "records")
        self.files = Metrics.counter("read", "files")

    def process(self, element: tuple[int, int, str | bytes | tuple[str | bytes, ...]]):
        index, total, paths = element
        left = self.limit
        for i, path in enumerate([paths] if isinstance(paths, (str, bytes)) else paths):
            n = 0
            for out in self._read(index + i, path, left) if isinstance(path, str) else self._unnamed(path):
                n += 1
                yield out
            yield beam.pvalue.TaggedOutput(COUNTED, (self.kind, n))
            log.info("read %d/%d %s: %d records", index + i + 1, total, path, n)
            if left is not None:
                left -= n
                if left <= 0:
                    break

    def _unnamed(self, path: bytes):
        """A file whose name is not UTF-8 (transported as its bytes): one rejection, nothing read.
        Its name cannot travel in any record (Beam's and parquet's strings are UTF-8)."""
        shown = path.decode("utf-8", "backslashreplace")
        name = shown.rsplit("/", 1)[-1]
        Metrics.counter("read", "file_name_not_utf8").inc()
        yield beam.pvalue.TaggedOutput(REJECTED, Rejection(
            f"{name}#unreadable", shown, None, "read", "file_name_not_utf8",
            "the file name is not valid UTF-8; rename the file to read it", self.kind))

    def _read(self, index: int, path: str, left: int | None):
        read = read_web_file if self.kind == Document.KIND else read_file
        n, marked = 0, time.monotonic()
        records = read(path, self.config)
        try:
            for record in records:
                if left is not None and n >= left:
                    break
                n += 1
                if isinstance(record, Rejection):
                    Metrics.counter("read", record.reason).inc()
                    yield beam.pvalue.TaggedOutput(REJECTED, record)
                else:
                    yield record
                if self.progress_root and time.monotonic() - marked > MARK_EVERY_S:
                    write_marker(self.progress_root, index, n, done=False)
                    marked = time.monotonic()
        finally:
            records.close()  # a limit stops mid-file: the reader's files close now
        self.records.inc(n)
        self.files.inc()
        if self.progress_root:
            write_marker(self.progress_root, index, n, done=True)


class ReadRecords(beam.PTransform):
    """Yields a DoOutputsTuple: main `records` (Samples or Documents, by input.kind), `rejected`
    (Rejections), `counted` ((kind, records) per file). `progress_root`: the run directory whose
    _run/progress/ gets the reader's markers; `limit`: read only the first N records (in file order)."""

    def __init__(self, paths: list[str], config: InputConfig, progress_root: str | None = None,
                 limit: int | None = None):
        super().__init__()
        self.paths = paths
        self.config = config
        self.progress_root = progress_root
        self.limit = limit

    def expand(self, pbegin):
        paths = [_transportable(p) for p in self.paths]
        if self.limit is None:
            work = [(i, len(paths), p) for i, p in enumerate(paths)]
        else:  # one worker reads the files in order until the limit: "the first N" needs one reader
            work = [(0, len(paths), tuple(paths))]
        element = beam.typehints.Tuple[int, int, beam.typehints.Any]
        return (
            pbegin
            | "Files" >> beam.Create(work).with_output_types(element)
            | "OneFilePerWorker" >> beam.Reshuffle().with_output_types(element)
            | "Read" >> beam.ParDo(_ReadFileFn(self.config, self.progress_root, self.limit))
            .with_output_types(Document if self.config.kind == Document.KIND else Sample,
                               **{REJECTED: Rejection, COUNTED: beam.typehints.Tuple[str, int]})
            .with_outputs(REJECTED, COUNTED, main="records")
        )


def _transportable(path: str) -> str | bytes:
    """A local file name with bytes that are not UTF-8 (Python holds them as lone surrogates) would fail
    Beam's string coder and the whole run: it travels as its bytes and becomes one rejection."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return os.fsencode(path)
