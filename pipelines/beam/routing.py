"""Kept/rejected routing, written once for every stage: what a stage's per-record code returns
(records and Rejections, mixed) is split into two typed PCollections and counted per reason.

The split also guards the per-record work: an exception raised on one record becomes that
record's Rejection (reason `error_<ExceptionClass>`, the message in `detail`) instead of failing
the bundle, and a batch that raises is retried record by record, so one record cannot sink its
batch. Only infrastructure errors (a model that cannot load in `setup`) fail a run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import apache_beam as beam
from apache_beam.metrics import Metrics

from filters.records import Event
from filters.sample import Rejection, Sample
from pipelines.beam.coders import Tagged  # importing coders registers them wherever stages run
from pipelines.io.progress_markers import StageCounter
from pipelines.storage_errors import is_disk_full

REJECTED = "rejected"
TALLIES = "tallies"
# Declared on keyed steps so Beam encodes (key, Sample) with SampleCoder, not its pickle fallback.
KeyedSample = beam.typehints.Tuple[str, Sample]
# Counts a stage reports besides rejections: ((stage, kind, event, reason), n), event being
# "converted" (records of this kind turned into records of another), "produced" (records of this
# kind made by a conversion) or "edit" (a part of a record removed or changed, the record kept).
TallyKey = beam.typehints.Tuple[str, str, str, str]
Tally = beam.typehints.Tuple[TallyKey, int]


class StageOutputs(NamedTuple):
    kept: beam.PCollection
    rejected: beam.PCollection
    tallies: beam.PCollection | None = None


def error_rejection(record: Any, stage: str, err: BaseException) -> Rejection:
    return Rejection.for_error(record.key, record.source, record.url, stage, err, record.KIND)


def _as_list(outcomes: Any) -> list:
    """A step returns a record, a Rejection, a list of them, or yields them (a tuple counts as a list)."""
    if outcomes is None:
        return []
    if isinstance(outcomes, (list, tuple)):
        return list(outcomes)
    if hasattr(outcomes, "KIND") or isinstance(outcomes, (Rejection, Event)):
        return [outcomes]
    return list(outcomes)  # a generator: drained here, so an error mid-way is still caught


def _emit(outcomes: Iterable, stage: str):
    for outcome in outcomes:
        if isinstance(outcome, Rejection):
            Metrics.counter(stage, outcome.reason).inc()
            yield beam.pvalue.TaggedOutput(REJECTED, outcome)
        elif isinstance(outcome, Event):
            if outcome.n:
                yield beam.pvalue.TaggedOutput(TALLIES, ((stage, outcome.kind, outcome.event, outcome.reason), outcome.n))
        else:
            yield outcome


BUSY_US = "_busy_us"  # a stage's own compute, summed over its elements: the manifest's per-stage timings
_BUSY_COUNTERS: dict = {}  # stage -> its counter, made once: this runs for every element


def measured_call(fn: Callable, element: Any, stage: str, *args, **kwargs) -> list:
    """guarded_call, with the time it took added to the stage's BUSY_US counter. Outcomes are a list
    before anything is emitted, so fused downstream stages are not counted here."""
    started = time.perf_counter()
    try:
        return guarded_call(fn, element, stage, *args, **kwargs)
    finally:
        counter = _BUSY_COUNTERS.get(stage)
        if counter is None:  # a delegating counter: it finds the running bundle's container at inc()
            counter = _BUSY_COUNTERS[stage] = Metrics.counter(stage, BUSY_US)
        counter.inc(int((time.perf_counter() - started) * 1e6))


def guarded_call(fn: Callable, element: Any, stage: str, *args, **kwargs) -> list:
    """fn(element) as a list of outcomes; a record that raises becomes its error Rejection, and a
    batch (a list of records) that raises is retried one record at a time."""
    try:
        return _as_list(fn(element, *args, **kwargs))
    except Exception as err:
        if is_disk_full(err):  # the disk, not the record: stop the run (one line, storage_errors.py)
            raise
        if isinstance(element, list):
            if len(element) == 1:
                return [error_rejection(element[0], stage, err)]
            return [o for record in element for o in guarded_call(fn, [record], stage, *args, **kwargs)]
        records = _records_in(element)
        if records:  # a record, or a group of them (a join, a dedup group): each is rejected
            return [error_rejection(record, stage, err) for record in records]
        raise  # no record in it (a key, a group of scores): nothing to reject, an error of ours


def _records_in(element: Any) -> list:
    """The records an element carries: itself, or those inside a (key, group) or a Tagged."""
    if hasattr(element, "KIND"):
        return [element]
    if isinstance(element, Tagged):
        return [element.record] if element.record is not None and hasattr(element.record, "KIND") else []
    if isinstance(element, (str, bytes, dict)) or not isinstance(element, Iterable):
        return []
    return [record for item in element for record in _records_in(item)]


class RoutedDoFn(beam.DoFn):
    """Base of a stage's DoFn: implement `handle(element, ...)` returning records and Rejections."""

    stage = ""

    def handle(self, element, *args, **kwargs):
        raise NotImplementedError

    def process(self, element, *args, **kwargs):
        counter = getattr(self, "_progress", None)
        if counter is None:  # lazily: subclasses keep their own __init__
            counter = self._progress = StageCounter(self.stage, type(self).__name__.strip("_"))
        counter.add(len(element) if isinstance(element, list) else 1)
        yield from _emit(measured_call(self.handle, element, self.stage, *args, **kwargs), self.stage)

    def finish_bundle(self):
        counter = getattr(self, "_progress", None)
        if counter is not None:
            counter.flush()


class _RoutedFn(RoutedDoFn):
    def __init__(self, fn: Callable, stage: str):
        self.fn, self.stage = fn, stage

    def handle(self, element, *args, **kwargs):
        return self.fn(element, *args, **kwargs)


def split(pcoll, label: str, step: Callable | RoutedDoFn, *args, stage: str, kind: type = Sample,
          **kwargs) -> StageOutputs:
    """Apply `step` (a function or a RoutedDoFn) to each element and route its outcomes."""
    dofn = step if isinstance(step, RoutedDoFn) else _RoutedFn(step, stage)
    outputs = (pcoll | label >> beam.ParDo(dofn, *args, **kwargs)
               .with_output_types(kind, **{REJECTED: Rejection, TALLIES: Tally})
               .with_outputs(REJECTED, TALLIES, main="kept"))
    return StageOutputs(outputs.kept, outputs[REJECTED], outputs[TALLIES])


class PerRecord(beam.PTransform):
    """A whole stage that is one routed step per element: split(elements, label, step)."""

    def __init__(self, label: str, step: RoutedDoFn, kind: type):
        super().__init__()
        self.label, self.step, self.kind = label, step, kind

    def expand(self, pcoll):
        return split(pcoll, self.label, self.step, stage=self.step.stage, kind=self.kind)


def all_rejections(label: str, *pcolls) -> beam.PCollection:
    return pcolls | label >> beam.Flatten().with_output_types(Rejection)


def all_tallies(label: str, *pcolls) -> beam.PCollection:
    return [p for p in pcolls if p is not None] | label >> beam.Flatten().with_output_types(Tally)


def no_rejections(pipeline, label: str = "NoRejections") -> beam.PCollection:
    return pipeline | label >> beam.Create([]).with_output_types(Rejection)
