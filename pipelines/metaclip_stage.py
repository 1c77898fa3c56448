"""The MetaCLIP stage on Beam: match -> global counts per entry (CombinePerKey) -> entry_prob as a
side input -> keep or balance out; then the counts after balancing and the report."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.utils.shared import Shared

from filters.metaclip import MetadataMatcher, load_entries
from filters.metaclip_balance import balanced_keep
from filters.sample import Rejection, Sample
from manifests.recipe import MetaclipConfig
from pipelines.metaclip_report import write_metaclip_report
from pipelines.stage import REJECTED, StageOutputs

STAGE = "metaclip"
ENTRIES = "metaclip_entries"


class _MatchFn(beam.DoFn):
    def __init__(self, config: MetaclipConfig, shared: Shared):
        self.config, self.shared = config, shared  # one automaton per worker process

    def setup(self):
        metadata = self.config.metadata

        class _Holder:  # Shared needs a weak-referenceable object
            def __init__(self):
                self.matcher = MetadataMatcher(load_entries(metadata))

        self.matcher = self.shared.acquire(_Holder, tag=metadata).matcher

    def process(self, sample: Sample):
        ids = self.matcher.match(sample.caption) if sample.caption is not None else []
        sample.annotations[ENTRIES] = ids
        if not ids and self.config.mode == "balance":
            Metrics.counter(STAGE, "metaclip_no_match").inc()
            detail = "no caption" if sample.caption is None else "no metadata entry in the caption"
            yield beam.pvalue.TaggedOutput(REJECTED, Rejection.of(sample, STAGE, "metaclip_no_match", detail))
        else:
            yield sample


def _balance(sample: Sample, counts: dict[int, int], t: int, seed: int):
    ids = sample.annotations[ENTRIES]
    if balanced_keep(sample.key, ids, counts, t, seed):
        yield sample
        return
    Metrics.counter(STAGE, "metaclip_balanced_out").inc()
    heaviest = max(ids, key=lambda e: counts[e])
    yield beam.pvalue.TaggedOutput(REJECTED, Rejection.of(
        sample, STAGE, "metaclip_balanced_out", f"{len(ids)} entries; largest count {counts[heaviest]} (id {heaviest})"))


def _entry_counts(samples, label: str):
    return (samples
            | f"{label}Entries" >> beam.FlatMap(lambda s: ((e, 1) for e in s.annotations[ENTRIES]))
            | f"{label}Counts" >> beam.CombinePerKey(sum))


class MetaclipStage(beam.PTransform):
    name_in_funnel = STAGE

    def __init__(self, config: MetaclipConfig, seed: int, root: str):
        super().__init__()
        self.config, self.seed, self.root = config, seed, root

    def expand(self, samples):
        c = self.config
        matched = samples | "Match" >> beam.ParDo(_MatchFn(c, Shared())).with_output_types(
            Sample, **{REJECTED: Rejection}).with_outputs(REJECTED, main="kept")
        before = _entry_counts(matched.kept, "Before")
        if c.mode == "balance":
            balanced = matched.kept | "Balance" >> beam.FlatMap(
                _balance, counts=beam.pvalue.AsDict(before), t=c.t, seed=self.seed,
            ).with_output_types(Sample, **{REJECTED: Rejection}).with_outputs(REJECTED, main="kept")
            kept = balanced.kept
            rejected = (matched[REJECTED], balanced[REJECTED]) | "AllRejected" >> beam.Flatten()
        else:
            kept, rejected = matched.kept, matched[REJECTED]
        after = _entry_counts(kept, "After")
        _ = (samples.pipeline | "ReportTrigger" >> beam.Create([None])
             | "Report" >> beam.Map(write_metaclip_report, root=self.root, metadata=c.metadata, t=c.t, plot=c.plot,
                                    before=beam.pvalue.AsList(before), after=beam.pvalue.AsList(after)))
        return StageOutputs(kept, rejected)


def preflight(config: MetaclipConfig) -> list[dict]:
    from filters.model_files import package_version
    from manifests.storage import sha256_of

    try:
        entries = load_entries(config.metadata)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"metaclip.metadata {config.metadata!r} not found; build one with "
                                f"`vlcurate metadata build metadata.json`") from err
    import ahocorasick  # noqa: F401  (fail here, not in a worker, when pyahocorasick is missing)
    return [{"stage": STAGE, "name": "metaclip-metadata", "path": config.metadata, "entries": len(entries),
             "sha256": sha256_of(config.metadata), "pyahocorasick": package_version("pyahocorasick")}]
