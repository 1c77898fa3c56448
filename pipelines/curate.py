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

import apache_beam as beam
import fsspec
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from filters.model_files import package_version
from manifests.manifest import Counts, Manifest, build_funnel, check_accounting, write_manifest
from manifests.recipe import Recipe
from manifests.storage import atomic_write_bytes, glob_files
from pipelines.readers import STAGE as READ_STAGE
from pipelines.download import DownloadResult, download
from pipelines.rejection_files import REJECTED_DIR
from pipelines.run_dir import RunDirError, RunDirState, clear_run_dir, inspect_run_dir
from pipelines.sink import SINK_STAGE, WriteRejections, WriteShards
from pipelines.shard_writer import SHARDS_DIR
from pipelines.sources import COUNTED, REJECTED, ReadSamples
from pipelines.metaclip_report import STAGE_REPORTS
from pipelines.stages import StageContext, preflight, stage_transform

log = logging.getLogger("vlcurate")
RUN_DIR = "_run"
SUMMARY = f"{RUN_DIR}/summary.json"
RAW_DIR = "raw"  # a chained run's download (a complete `vlcurate download` run directory)
OWNED = {SHARDS_DIR, REJECTED_DIR, RUN_DIR, RAW_DIR, "reports", "manifest.json"}  # what --overwrite may delete
PACKAGES = ("apache-beam", "pyarrow", "pillow", "numpy", "fasttext-numpy2-wheel", "spacy", "webdataset",
            "pydantic", "fsspec", "torch", "open_clip_torch", "rapidocr-onnxruntime", "onnxruntime", "faiss-cpu", "pyahocorasick", "matplotlib")


class CurateError(RuntimeError):
    """A run that cannot start (bad input glob, occupied output directory, missing model)."""


@dataclass
class CurateResult:
    manifest: Manifest
    manifest_url: str


def expand_inputs(pattern: str) -> list[str]:
    matched = glob_files(pattern)
    if not matched:
        raise CurateError(f"--input {pattern!r} matches no files")
    tars = {p.rsplit(".tar", 1)[0] for p in matched if p.endswith(".tar")}
    sidecars = [p for p in matched if p.endswith(".parquet") and p.rsplit(".parquet", 1)[0] in tars]
    if sidecars:
        raise CurateError(
            f"--input matches both shards and their metadata parquet (e.g. {sidecars[0]}); "
            "match only the .tar files, e.g. --input 'DIR/*.tar'"
        )
    return matched


def prepare_output(root: str, overwrite: bool, resume_download: bool = False) -> None:
    """Refuse a used directory unless --overwrite; after an interrupted chained run, keep raw/ to resume."""
    try:
        state = inspect_run_dir(root, OWNED)
    except RunDirError as err:
        raise CurateError(f"{err}; refusing to delete them even with --overwrite") from None
    if state is RunDirState.FRESH:
        clear_run_dir(root, set())
    elif overwrite:
        clear_run_dir(root, OWNED)
    elif state is RunDirState.INTERRUPTED and resume_download:
        log.info("%s holds an interrupted run: resuming its download, redoing curation", root)
        clear_run_dir(root, OWNED - {RAW_DIR})
    else:
        raise CurateError(f"output {root} is not empty; pass --overwrite to replace a previous run")


def _write_summary(_, root: str, shards, rejected_files, reasons, n_input) -> None:
    summary = {"shards": sorted(shards, key=lambda s: s["name"]),
               "rejected": sorted(rejected_files, key=lambda r: r["name"]),
               "reasons": [[stage, reason, n] for (stage, reason), n in sorted(reasons)],
               "input": n_input}
    atomic_write_bytes(f"{root}/{SUMMARY}", json.dumps(summary).encode("utf-8"))


def _stage_reports(root: str) -> tuple[dict, list[dict]]:
    """Summaries stages left in _run/reports/STAGE.json, and the files they wrote under reports/."""
    fs, path = fsspec.core.url_to_fs(root)
    reports, files = {}, []
    for found in sorted(fs.glob(f"{path}/{STAGE_REPORTS}/*.json")):
        with fs.open(found, "rt") as f:
            report = json.load(f)
        reports[found.rsplit("/", 1)[-1][: -len(".json")]] = report["summary"]
        files.extend(report["files"])
    return reports, sorted(files, key=lambda f: f["name"])


def build_pipeline(p: beam.Pipeline, recipe: Recipe, paths: list[str], root: str) -> None:
    read = p | "ReadInputs" >> ReadSamples(paths, recipe.input)
    kept, rejected = read.samples, [read[REJECTED]]
    for i, entry in enumerate(recipe.stages):
        outputs = kept | f"{i:02d}_{entry.name}" >> stage_transform(entry, StageContext(recipe.seed, root))
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
           overwrite: bool = False, allow_private_networks: bool | None = None) -> CurateResult:
    """Curate input shards; with a `download:` block in the recipe, input_pattern is a URL list
    that is downloaded first into OUTPUT/raw/ and the funnel starts at the URLs read."""
    started = time.perf_counter()
    root = output.rstrip("/")
    raw: DownloadResult | None = None
    if recipe.download is not None:
        prepare_output(root, overwrite, resume_download=True)
        raw = download(recipe, input_pattern, f"{root}/{RAW_DIR}", allow_private_networks=allow_private_networks,
                       reuse_complete=True)
        paths = raw.shard_urls()
        if not paths:
            raise CurateError(f"the download kept no image (see {raw.manifest_url}); nothing to curate")
    else:
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
    reports, report_files = _stage_reports(root)
    stage_order = [READ_STAGE, *(e.name for e in recipe.stages), SINK_STAGE]
    kept = sum(s["samples"] for s in summary["shards"])
    funnel = build_funnel(stage_order, summary["input"], reasons)
    counts = Counts(input=summary["input"], kept=kept, rejected=sum(reasons.values()))
    rejected, inputs = summary["rejected"], {"pattern": input_pattern, "files": paths}
    if raw is not None:  # the funnel starts at the URLs read; the download's rejections are part of the table
        prior = raw.manifest
        funnel = prior.funnel + funnel
        counts = Counts(input=prior.counts.input, kept=kept, rejected=prior.counts.rejected + counts.rejected)
        rejected = [{**f.model_dump(), "name": f"{RAW_DIR}/{f.name}"} for f in prior.rejected] + rejected
        inputs = {"url_list": input_pattern, "raw_manifest": f"{RAW_DIR}/manifest.json",
                  "raw_shards": len(paths), "urls": prior.counts.input}
    manifest = Manifest(
        created_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        recipe=recipe.resolved(),
        inputs=inputs,
        counts=counts,
        funnel=funnel,
        shards=summary["shards"],
        rejected=rejected,
        versions={
            "vlcurate": package_version("vlcurate"),
            "python": platform.python_version(),
            "packages": {name: package_version(name) for name in PACKAGES + (("img2dataset",) if raw else ())},
            "models": models,
            "runner": str(options.view_as(StandardOptions).runner),
            "direct_running_mode": options.view_as(DirectOptions).direct_running_mode,
        },
        timings_s={"preflight": round(preflight_s, 3), "pipeline": round(pipeline_s, 3),
                   "total": round(time.perf_counter() - started, 3)},
        reports=reports,
        report_files=report_files,
    )
    check_accounting(manifest.counts)  # a broken count keeps _run/ for inspection and writes no manifest
    fs, path = fsspec.core.url_to_fs(root)
    fs.rm(f"{path}/{RUN_DIR}", recursive=True)
    return CurateResult(manifest, write_manifest(root, manifest))
