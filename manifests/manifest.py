"""manifest.json: what a curation run produced. Written last; its presence marks a complete dataset."""

from __future__ import annotations

import json
from typing import Any

import fsspec
from pydantic import BaseModel, ConfigDict

from manifests.storage import atomic_write_bytes, sha256_of

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1


class AccountingError(RuntimeError):
    """input != kept + rejected: some sample went missing or was counted twice."""


class FileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str  # relative to the dataset root
    bytes: int
    sha256: str


class ShardEntry(FileEntry):
    samples: int
    metadata: FileEntry  # the shard's parquet


class RejectedFile(FileEntry):
    rows: int


class StageFunnel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stage: str
    input: int
    kept: int
    rejected: int
    reasons: dict[str, int]


class Counts(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input: int
    kept: int
    rejected: int


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format_version: int = FORMAT_VERSION
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
    reports: dict[str, Any] = {}  # per stage: its summary (e.g. MetaCLIP's head/tail entry counts)
    report_files: list[FileEntry] = []  # files stages wrote under reports/


def build_funnel(stage_order: list[str], n_input: int, reason_counts: dict[tuple[str, str], int]) -> list[StageFunnel]:
    """Per-stage in/kept/rejected, each stage's input being the previous stage's kept."""
    unknown = sorted({stage for stage, _ in reason_counts} - set(stage_order))
    if unknown:
        raise AccountingError(f"rejections from stages not in the run's order: {unknown}")
    funnel, remaining = [], n_input
    for stage in stage_order:
        reasons = {r: n for (s, r), n in sorted(reason_counts.items()) if s == stage}
        rejected = sum(reasons.values())
        funnel.append(StageFunnel(stage=stage, input=remaining, kept=remaining - rejected, rejected=rejected,
                                  reasons=reasons))
        remaining -= rejected
    return funnel


def check_accounting(counts: Counts) -> None:
    if counts.input != counts.kept + counts.rejected:
        raise AccountingError(
            f"accounting broken: input {counts.input} != kept {counts.kept} + rejected {counts.rejected} "
            f"(difference {counts.input - counts.kept - counts.rejected}); no manifest written"
        )


def write_manifest(root: str, manifest: Manifest) -> str:
    check_accounting(manifest.counts)
    url = f"{root.rstrip('/')}/{MANIFEST_NAME}"
    atomic_write_bytes(url, (manifest.model_dump_json(indent=2) + "\n").encode("utf-8"))
    return url


def read_manifest(root: str) -> Manifest:
    with fsspec.open(f"{root.rstrip('/')}/{MANIFEST_NAME}", "rt", encoding="utf-8") as f:
        return Manifest.model_validate(json.load(f))


def verify_dataset(root: str) -> list[str]:
    """Problems found re-hashing every file the manifest lists (empty when the dataset is intact)."""
    manifest = read_manifest(root)
    problems = []
    if manifest.counts.kept != sum(s.samples for s in manifest.shards):
        problems.append("counts.kept differs from the sum of shard sample counts")
    entries: list[FileEntry] = [*manifest.shards, *(s.metadata for s in manifest.shards), *manifest.rejected,
                                *manifest.report_files]
    fs, base = fsspec.core.url_to_fs(root)
    for entry in entries:
        path = f"{base.rstrip('/')}/{entry.name}"
        if not fs.exists(path):
            problems.append(f"{entry.name}: missing")
            continue
        size = fs.size(path)
        if size != entry.bytes:
            problems.append(f"{entry.name}: {size} bytes, manifest says {entry.bytes}")
        elif sha256_of(f"{root.rstrip('/')}/{entry.name}") != entry.sha256:
            problems.append(f"{entry.name}: sha256 differs from the manifest")
    return problems
