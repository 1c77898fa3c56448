"""The MetaCLIP stage on Beam: match -> global counts per entry (CombinePerKey) -> entry_prob as a
side input -> keep or balance out; then the counts after balancing and the report."""

from __future__ import annotations

from typing import Literal

import apache_beam as beam
from apache_beam.utils.shared import Shared
from pydantic import Field

from filters.metaclip import MetadataMatcher, load_entries
from filters.metaclip_balance import balanced_keep
from filters.sample import Rejection, Sample
from manifests.recipe_paths import RecipePath
from manifests.schema import Strict
from pipelines.beam.routing import RoutedDoFn, StageOutputs, all_rejections, split
from pipelines.stages.metaclip_report import write_metaclip_report
from pipelines.stages.spec import Preflight, StageSpec

STAGE = "metaclip"
ENTRIES = "metaclip_entries"


class MetaclipConfig(Strict):
    """MetaCLIP: match captions against metadata entries, then balance entry counts at t."""

    metadata: RecipePath = Field(..., description="JSON list of entries (vlcurate metadata build, or MetaCLIP's "
                                 "file); .gz/.bz2/.xz compressed too")
    t: int = Field(20_000, ge=1, description="per-entry cap; 20,000 for a 400M pool, scale it to yours")
    mode: Literal["balance", "annotate"] = Field("balance", description="annotate: record matches, drop nothing")
    plot: bool = Field(True, description="write reports/metaclip_entry_counts.png (log-log, before/after)")


class _MatchFn(RoutedDoFn):
    stage = STAGE

    def __init__(self, config: MetaclipConfig, shared: Shared):
        self.config, self.shared = config, shared  # one automaton per worker process

    def setup(self):
        metadata = self.config.metadata

        class _Holder:  # Shared needs a weak-referenceable object
            def __init__(self):
                self.matcher = MetadataMatcher(load_entries(metadata))

        self.matcher = self.shared.acquire(_Holder, tag=metadata).matcher

    def handle(self, sample: Sample):
        ids = self.matcher.match(sample.caption) if sample.caption is not None else []
        sample.annotations[ENTRIES] = ids
        if not ids and self.config.mode == "balance":
            detail = "no caption" if sample.caption is None else "no metadata entry in the caption"
            return Rejection.of(sample, STAGE, "metaclip_no_match", detail)
        return sample


def _balance(sample: Sample, counts: dict[int, int], t: int, seed: int):
    ids = sample.annotations[ENTRIES]
    if balanced_keep(sample.key, ids, counts, t, seed):
        return sample
    heaviest = max(ids, key=lambda e: counts[e])
    return Rejection.of(sample, STAGE, "metaclip_balanced_out",
                        f"{len(ids)} entries; largest count {counts[heaviest]} (id {heaviest})")


def _entry_counts(samples, label: str):
    return (samples
            | f"{label}Entries" >> beam.FlatMap(lambda s: ((e, 1) for e in s.annotations[ENTRIES]))
            | f"{label}Counts" >> beam.CombinePerKey(sum))


class MetaclipStage(beam.PTransform):
    def __init__(self, config: MetaclipConfig, seed: int, root: str):
        super().__init__()
        self.config, self.seed, self.root = config, seed, root

    def expand(self, samples):
        c = self.config
        matched = split(samples, "Match", _MatchFn(c, Shared()), stage=STAGE)
        before = _entry_counts(matched.kept, "Before")
        if c.mode == "balance":
            balanced = split(matched.kept, "Balance", _balance, stage=STAGE,
                             counts=beam.pvalue.AsDict(before), t=c.t, seed=self.seed)
            kept = balanced.kept
            rejected = all_rejections("AllRejected", matched.rejected, balanced.rejected)
        else:
            kept, rejected = matched.kept, matched.rejected
        after = _entry_counts(kept, "After")
        _ = (samples.pipeline | "ReportTrigger" >> beam.Create([None])
             | "Report" >> beam.Map(write_metaclip_report, root=self.root, metadata=c.metadata, t=c.t, plot=c.plot,
                                    before=beam.pvalue.AsList(before), after=beam.pvalue.AsList(after)))
        return StageOutputs(kept, rejected)


def preflight(config: MetaclipConfig) -> Preflight:
    from filters.model_files import package_version
    from manifests.storage import sha256_of

    try:
        entries = load_entries(config.metadata)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"metaclip.metadata {config.metadata!r} not found (in a recipe file, a relative "
                                f"path is relative to the recipe); build one with "
                                f"`vlcurate metadata build metadata.json`") from err
    import ahocorasick  # noqa: F401  (fail here, not in a worker, when pyahocorasick is missing)
    return Preflight(models=[{"stage": STAGE, "name": "metaclip-metadata", "path": config.metadata,
                              "entries": len(entries), "sha256": sha256_of(config.metadata),
                              "pyahocorasick": package_version("pyahocorasick")}])


SPEC = StageSpec(
    name=STAGE,
    summary="MetaCLIP: match captions against metadata entries (Aho-Corasick), balance entry counts at t",
    config=MetaclipConfig,
    build=lambda config, context: MetaclipStage(config, context.seed, context.root),
    provides=(ENTRIES,),
    reasons=("metaclip_no_match", "metaclip_balanced_out"),
    preflight=preflight,
    report="reports/metaclip_entry_counts.{parquet,png}; manifest reports.metaclip",
)
