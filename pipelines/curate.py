"""`vlcurate curate`: input files -> recipe stages -> shards + rejection table; then the manifest.

The Beam graph ends by writing a run summary (shard and rejection-file entries, reason counts,
input count) from side inputs, which exist only once every shard is written. The driver then checks
input == kept + rejected and writes manifest.json last.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import PurePosixPath
from typing import Any

import apache_beam as beam
import fsspec
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from filters.model_files import package_version
from manifests.manifest import Counts, Manifest, build_funnel, check_accounting, write_manifest
from manifests.recipe import Recipe
from manifests.storage import atomic_write_bytes
from pipelines.readers import STAGE as READ_STAGE
from pipelines.sink import REJECTED_DIR, SINK_STAGE, WriteRejections, WriteShards
from pipelines.shard_writer import SHARDS_DIR
from pipelines.sources import COUNTED, REJECTED, ReadSamples
from pipelines.stages import preflight, stage_transform

log = logging.getLogger("vlcurate")
RUN_DIR = "_run"
SUMMARY = f"{RUN_DIR}/summary.json"
OWNED = {SHARDS_DIR, REJECTED_DIR, RUN_DIR, "manifest.json"}  # what --overwrite may delete
PACKAGES = ("apache-beam", "pyarrow", "pillow", "numpy", "fasttext-numpy2-wheel", "spacy", "webdataset",
            "pydantic", "fsspec")


class CurateError(RuntimeError):
    """A run that cannot start (bad input glob, occupied output directory, missing model)."""


@dataclass
class CurateResult:
    manifest: Manifest
    manifest_url: str


def expand_inputs(pattern: str) -> list[str]:
    fs, _ = fsspec.core.url_to_fs(pattern)
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    matched = sorted(p for p in fs.glob(pattern) if fs.isfile(p))
    if not matched:
        raise CurateError(f"--input {pattern!r} matches no files")
    if protocol not in ("file", "local"):
        matched = [f"{protocol}://{p}" for p in matched]
    tars = {p.rsplit(".tar", 1)[0] for p in matched if p.endswith(".tar")}
    sidecars = [p for p in matched if p.endswith(".parquet") and p.rsplit(".parquet", 1)[0] in tars]
    if sidecars:
        raise CurateError(
            f"--input matches both shards and their metadata parquet (e.g. {sidecars[0]}); "
            "match only the .tar files, e.g. --input 'DIR/*.tar'"
        )
    return matched


def prepare_output(root: str, overwrite: bool) -> None:
    fs, path = fsspec.core.url_to_fs(root)
    if not fs.exists(path):
        fs.makedirs(path, exist_ok=True)
        return
    present = {PurePosixPath(p).name for p in fs.ls(path, detail=False)}
    if not present:
        return
    if not overwrite:
        raise CurateError(f"output {root} is not empty; pass --overwrite to replace a previous run")
    foreign = sorted(present - OWNED)
    if foreign:
        raise CurateError(f"output {root} holds files vlcurate did not write ({', '.join(foreign[:5])}); "
                          "refusing to delete them even with --overwrite")
    for name in present:
        fs.rm(f"{path}/{name}", recursive=True)


def _write_summary(_, root: str, shards, rejected_files, reasons, n_input) -> None:
    summary = {"shards": sorted(shards, key=lambda s: s["name"]),
               "rejected": sorted(rejected_files, key=lambda r: r["name"]),
               "reasons": [[stage, reason, n] for (stage, reason), n in sorted(reasons)],
               "input": n_input}
    atomic_write_bytes(f"{root}/{SUMMARY}", json.dumps(summary).encode("utf-8"))


def build_pipeline(p: beam.Pipeline, recipe: Recipe, paths: list[str], root: str) -> None:
    read = p | "ReadInputs" >> ReadSamples(paths, recipe.input)
    kept, rejected = read.samples, [read[REJECTED]]
    for i, entry in enumerate(recipe.stages):
        outputs = kept | f"{i:02d}_{entry.name}" >> stage_transform(entry)
        kept = outputs.kept
        rejected.append(outputs.rejected)
    shards, sink_rejected = kept | "WriteShards" >> WriteShards(root, recipe.output.samples_per_shard, recipe.seed)
    all_rejected = (*rejected, sink_rejected) | "AllRejections" >> beam.Flatten()
    rejection_files = all_rejected | "WriteRejections" >> WriteRejections(
        root, recipe.output.rejected_rows_per_file, recipe.seed)
    reasons = (all_rejected | "ReasonKey" >> beam.Map(lambda r: ((r.stage, r.reason), 1))
               | "CountReasons" >> beam.CombinePerKey(sum))
    n_input = read[COUNTED] | "CountInput" >> beam.CombineGlobally(sum)
    _ = (p | "Finish" >> beam.Create([None])
         | "WriteSummary" >> beam.Map(
             _write_summary, root=root, shards=beam.pvalue.AsList(shards),
             rejected_files=beam.pvalue.AsList(rejection_files), reasons=beam.pvalue.AsList(reasons),
             n_input=beam.pvalue.AsSingleton(n_input)))


def curate(recipe: Recipe, input_pattern: str, output: str, beam_args: list[str] | None = None,
           overwrite: bool = False) -> CurateResult:
    started = time.perf_counter()
    root = output.rstrip("/")
    paths = expand_inputs(input_pattern)
    prepare_output(root, overwrite)
    log.info("%d input file(s); output %s", len(paths), root)

    try:
        models = [m for entry in recipe.stages for m in preflight(entry)]
    except (FileNotFoundError, ValueError, OSError) as err:
        raise CurateError(f"a stage cannot start: {err}") from err
    preflight_s = time.perf_counter() - started

    options = PipelineOptions(beam_args or [])
    if options.view_as(StandardOptions).runner is None:
        options.view_as(StandardOptions).runner = "DirectRunner"
    pipeline_started = time.perf_counter()
    with beam.Pipeline(options=options) as p:
        build_pipeline(p, recipe, paths, root)
    pipeline_s = time.perf_counter() - pipeline_started

    with fsspec.open(f"{root}/{SUMMARY}", "rt") as f:
        summary = json.load(f)
    reasons = {(stage, reason): n for stage, reason, n in summary["reasons"]}
    stage_order = [READ_STAGE, *(e.name for e in recipe.stages), SINK_STAGE]
    kept = sum(s["samples"] for s in summary["shards"])
    manifest = Manifest(
        created_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        recipe=recipe.resolved(),
        inputs={"pattern": input_pattern, "files": paths},
        counts=Counts(input=summary["input"], kept=kept, rejected=sum(reasons.values())),
        funnel=build_funnel(stage_order, summary["input"], reasons),
        shards=summary["shards"],
        rejected=summary["rejected"],
        versions={
            "vlcurate": package_version("vlcurate"),
            "python": platform.python_version(),
            "packages": {name: package_version(name) for name in PACKAGES},
            "models": models,
            "runner": str(options.view_as(StandardOptions).runner),
            "direct_running_mode": options.view_as(DirectOptions).direct_running_mode,
        },
        timings_s={"preflight": round(preflight_s, 3), "pipeline": round(pipeline_s, 3),
                   "total": round(time.perf_counter() - started, 3)},
    )
    check_accounting(manifest.counts)  # a broken count keeps _run/ for inspection and writes no manifest
    fs, path = fsspec.core.url_to_fs(root)
    fs.rm(f"{path}/{RUN_DIR}", recursive=True)
    return CurateResult(manifest, write_manifest(root, manifest))
