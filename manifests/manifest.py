"""manifest.json: what a curation run produced. Written last; its presence marks a complete dataset."""

from __future__ import annotations

import json
import os
from typing import Any

import fsspec
from pydantic import BaseModel, ConfigDict, ValidationError

from manifests.storage import atomic_write_bytes, sha256_of

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 2  # 2: funnel rows per record kind (converted/produced/edits), counts_by_kind, shard_format_version


class AccountingError(RuntimeError):
    """input + produced != kept + rejected + converted: some record went missing or was counted twice."""


class FileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str  # relative to the dataset root
    bytes: int
    sha256: str


class ShardEntry(FileEntry):
    samples: int  # records in the shard: image-text pairs, or documents when kind is "document"
    kind: str = "sample"
    metadata: FileEntry  # the shard's parquet


class RejectedFile(FileEntry):
    rows: int


class StageFunnel(BaseModel):
    """One stage's effect on one record kind: kept = input - rejected - converted + produced."""

    model_config = ConfigDict(extra="forbid")
    stage: str
    kind: str = "sample"
    input: int
    kept: int
    rejected: int
    reasons: dict[str, int]
    converted: int = 0  # records of this kind turned into records of another kind (counted, not lost)
    produced: int = 0  # records of this kind made here from records of another kind
    edits: dict[str, int] = {}  # parts of kept records removed or changed, per reason (not rejections)


class Counts(BaseModel):
    """Records of one kind, or of all kinds together: input + produced = kept + rejected + converted."""

    model_config = ConfigDict(extra="forbid")
    input: int  # records read from the inputs
    kept: int
    rejected: int
    converted: int = 0
    produced: int = 0


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format_version: int = FORMAT_VERSION
    shard_format_version: int | None = None  # manifests/shard_format.py FORMAT_VERSION (curated shards only)
    tool: str = "vlcurate"
    created_utc: str
    recipe: dict[str, Any]
    inputs: dict[str, Any]
    counts: Counts
    funnel: list[StageFunnel]
    shards: list[ShardEntry]
    rejected: list[RejectedFile]
    versions: dict[str, Any]
    timings_s: dict[str, float]
    counts_by_kind: dict[str, Counts] = {}
    reports: dict[str, Any] = {}  # per stage: its summary (e.g. MetaCLIP's head/tail entry counts)
    report_files: list[FileEntry] = []  # files stages wrote under reports/
    card: FileEntry | None = None  # README.md, the dataset card (HF's format)
    report: FileEntry | None = None  # report.html (pipelines/report): funnel, reasons, scores, samples
    index_files: list[FileEntry] = []  # shards/sizes.json and shards/NNNNN_stats.json (open_clip, DataComp)

    def file_entries(self) -> list[FileEntry]:
        """Every file the run wrote and lists (names relative to the run directory)."""
        return [*self.shards, *(s.metadata for s in self.shards), *self.rejected, *self.report_files,
                *self.index_files, *([self.card] if self.card else []), *([self.report] if self.report else [])]


ReasonCounts = dict[tuple[str, str, str], int]  # (stage, kind, reason) -> rejections
TallyCounts = dict[tuple[str, str, str, str], int]  # (stage, kind, event, reason) -> n; event: converted/produced/edit


def build_funnel(stage_order: list[str], inputs: dict[str, int], reasons: ReasonCounts,
                 tallies: TallyCounts | None = None) -> list[StageFunnel]:
    """Per stage and kind: in, kept, rejected, converted, produced, edits; each stage's input of a
    kind is what the stages before it left of that kind. Kinds a stage never sees get no row."""
    tallies = tallies or {}
    unknown = sorted(({s for s, _, _ in reasons} | {s for s, *_ in tallies}) - set(stage_order))
    if unknown:
        raise AccountingError(f"rejections from stages not in the run's order: {unknown}")
    kinds = sorted({*inputs, *(k for _, k, _ in reasons), *(k for _, k, _, _ in tallies)},
                   key=lambda k: (k != "sample", k))
    flow = {k: inputs.get(k, 0) for k in kinds}
    funnel = []
    for stage in stage_order:
        for kind in kinds:
            rejected = {r: n for (s, k, r), n in sorted(reasons.items()) if (s, k) == (stage, kind)}
            events = {(e, r): n for (s, k, e, r), n in tallies.items() if (s, k) == (stage, kind)}
            converted = sum(n for (e, _), n in events.items() if e == "converted")
            produced = sum(n for (e, _), n in events.items() if e == "produced")
            edits = {r: n for (e, r), n in sorted(events.items()) if e == "edit"}
            if not (flow[kind] or rejected or events):
                continue
            kept = flow[kind] - sum(rejected.values()) - converted + produced
            funnel.append(StageFunnel(stage=stage, kind=kind, input=flow[kind], kept=kept,
                                      rejected=sum(rejected.values()), reasons=rejected, converted=converted,
                                      produced=produced, edits=edits))
            flow[kind] = kept
    return funnel


def counts_by_kind(inputs: dict[str, int], kept: dict[str, int], reasons: ReasonCounts,
                   tallies: TallyCounts | None = None) -> dict[str, Counts]:
    tallies = tallies or {}
    kinds = sorted({*inputs, *kept, *(k for _, k, _ in reasons), *(k for _, k, _, _ in tallies)})
    return {k: Counts(input=inputs.get(k, 0), kept=kept.get(k, 0),
                      rejected=sum(n for (_, kk, _), n in reasons.items() if kk == k),
                      converted=sum(n for (_, kk, e, _), n in tallies.items() if kk == k and e == "converted"),
                      produced=sum(n for (_, kk, e, _), n in tallies.items() if kk == k and e == "produced"))
            for k in kinds}


def total_counts(by_kind: dict[str, Counts]) -> Counts:
    return Counts(**{f: sum(getattr(c, f) for c in by_kind.values()) for f in Counts.model_fields})


def check_accounting(counts: Counts, kind: str = "") -> None:
    balance = counts.input + counts.produced - counts.kept - counts.rejected - counts.converted
    if balance:
        what = f"{kind} records" if kind else "accounting"
        raise AccountingError(
            f"{what} broken: input {counts.input} + produced {counts.produced} != kept {counts.kept} + rejected "
            f"{counts.rejected} + converted {counts.converted} (difference {balance}); no manifest written"
        )


def write_manifest(root: str, manifest: Manifest) -> str:
    check_accounting(manifest.counts)
    for kind, counts in manifest.counts_by_kind.items():
        check_accounting(counts, kind)
    url = f"{root.rstrip('/')}/{MANIFEST_NAME}"
    atomic_write_bytes(url, (manifest.model_dump_json(indent=2) + "\n").encode("utf-8"))
    return url


class ManifestError(ValueError):
    """A manifest.json that is not one of ours (not JSON, or not the schema): one line, never a traceback."""


def read_manifest(root: str | os.PathLike) -> Manifest:
    path = f"{str(root).rstrip('/')}/{MANIFEST_NAME}"
    with fsspec.open(path, "rt", encoding="utf-8") as f:
        try:
            return Manifest.model_validate(json.load(f))
        except json.JSONDecodeError as err:
            raise ManifestError(f"{path} is not a manifest: not JSON ({err})") from None
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "(top level)"
            raise ManifestError(f"{path} is not a vlcurate manifest: {where}: {first['msg']} "
                                f"({err.error_count()} problem(s))") from None
