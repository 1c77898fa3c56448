"""Source: input files -> Reshuffle (a file is the unit of work) -> records, and read rejections.

The recipe's `input.kind` says what the files hold: image-text pairs (tars, parquets) read into
Samples, or web pages (WARC, HTML, url+html tables) read into Documents."""

from __future__ import annotations

import logging

import apache_beam as beam
from apache_beam.metrics import Metrics

from filters.document import Document
from filters.sample import Rejection, Sample
from manifests.recipe import InputConfig
from pipelines.beam import coders  # noqa: F401  (registers the record coders)
from pipelines.io.readers import read_file
from pipelines.io.web_readers import read_web_file

REJECTED = "rejected"
COUNTED = "counted"
log = logging.getLogger("vlcurate")


class _ReadFileFn(beam.DoFn):
    def __init__(self, config: InputConfig):
        self.config = config
        self.kind = config.kind
        self.records = Metrics.counter("read", "records")
        self.files = Metrics.counter("read", "files")

    def process(self, element: tuple[int, int, str]):
        index, total, path = element
        n = 0
        read = read_web_file if self.kind == Document.KIND else read_file
        for record in read(path, self.config):
            n += 1
            if isinstance(record, Rejection):
                Metrics.counter("read", record.reason).inc()
                yield beam.pvalue.TaggedOutput(REJECTED, record)
            else:
                yield record
        self.records.inc(n)
        self.files.inc()
        yield beam.pvalue.TaggedOutput(COUNTED, (self.kind, n))
        log.info("read %d/%d %s: %d records", index + 1, total, path, n)


class ReadRecords(beam.PTransform):
    """Yields a DoOutputsTuple: main `records` (Samples or Documents, by input.kind), `rejected`
    (Rejections), `counted` ((kind, records) per file)."""

    def __init__(self, paths: list[str], config: InputConfig):
        super().__init__()
        self.paths = paths
        self.config = config

    def expand(self, pbegin):
        work = [(i, len(self.paths), p) for i, p in enumerate(self.paths)]
        return (
            pbegin
            | "Files" >> beam.Create(work).with_output_types(beam.typehints.Tuple[int, int, str])
            | "OneFilePerWorker" >> beam.Reshuffle().with_output_types(beam.typehints.Tuple[int, int, str])
            | "Read" >> beam.ParDo(_ReadFileFn(self.config))
            .with_output_types(Document if self.config.kind == Document.KIND else Sample,
                               **{REJECTED: Rejection, COUNTED: beam.typehints.Tuple[str, int]})
            .with_outputs(REJECTED, COUNTED, main="records")
        )
