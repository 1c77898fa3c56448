"""`vlcurate curate`: input files -> recipe stages -> shards + rejection table; then the manifest.

The Beam graph ends by writing a run summary (shard and rejection-file entries, reason counts,
input count) from side inputs, which exist only once every shard is written. The driver then checks
input == kept + rejected and writes manifest.json last.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass

import apache_beam as beam
import fsspec
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from filters.document import Document
from filters.records import DOCUMENT
from filters.sample import Sample, printable
from manifests.manifest import Manifest, build_funnel, counts_by_kind, total_counts
from manifests.recipe import Recipe, output_kind
from manifests.shard_format import FORMAT_VERSION as SHARD_FORMAT_VERSION
from manifests.storage import atomic_write_bytes, glob_files, glob_under
from manifests.table_union import unify_tables
from pipelines.beam.routing import BUSY_US, Tally, all_rejections
from pipelines.beam.sink import SINK_STAGE, WriteRejections, WriteShards
from pipelines.beam.sources import COUNTED, REJECTED, ReadRecords
from pipelines.drivers.download import DownloadResult, check_download, download
from pipelines.drivers.finish import RUN_DIR, build_manifest, finish
from pipelines.drivers.progress import run_progress
from pipelines.drivers.remote_runner import remote_runner_problem
from pipelines.drivers.shard_index import write_shard_index
from pipelines.io.readers import STAGE as READ_STAGE
from pipelines.io.run_dir import (CURATE_FILES, DOWNLOAD_FILES, RunDirError, RunDirState, clear_run_dir,
                                  inspect_run_dir, ours_matcher)
from pipelines.io.run_lock import RunLockedError, run_lock
from pipelines.io.scratch import private_tempdir
from pipelines.stages.metaclip_report import STAGE_REPORTS
from pipelines.stages.spec import Preflight, StageContext

log = logging.getLogger("vlcurate")
WEB_ONLY_SUFFIXES = (".warc", ".warc.gz", ".html", ".htm", ".jsonl", ".jsonl.gz")
SUMMARY = f"{RUN_DIR}/summary.json"
RAW_DIR = "raw"  # a chained run's download (a complete `vlcurate download` run directory)
OURS = ours_matcher(CURATE_FILES, nested={RAW_DIR: DOWNLOAD_FILES})  # what --overwrite may delete
PACKAGES = ("apache-beam", "pyarrow", "pillow", "numpy", "fasttext-numpy2-wheel", "spacy", "webdataset",
            "pydantic", "fsspec", "torch", "open_clip_torch", "rapidocr-onnxruntime", "onnxruntime", "faiss-cpu", "pyahocorasick", "matplotlib")


class CurateError(RuntimeError):
    """A run that cannot start (bad input glob, occupied output directory, missing model)."""


@dataclass
class CurateResult:
    manifest: Manifest
    manifest_url: str


def expand_inputs(pattern: str, kind: str = Sample.KIND) -> list[str]:
    matched = glob_files(pattern)
    if not matched:
        fs, path = fsspec.core.url_to_fs(pattern)
        example = f"{pattern.rstrip('/')}/*.{'warc.gz' if kind == DOCUMENT else 'tar'}"
        hint = f" (a folder: --input is a glob of files, e.g. '{example}')" if fs.isdir(path) else ""
        if not hint and "[" in pattern:
            hint = " ([...] in a glob is a set of characters: write [[] for a literal '[', e.g. 'in [[]x]/*.tar')"
        raise CurateError(f"--input {pattern!r} matches no files{hint}")
    web = [p for p in matched if p.lower().endswith(WEB_ONLY_SUFFIXES)]
    if web and kind != DOCUMENT:
        raise CurateError(f"--input matches web pages or crawls (e.g. {web[0]}) but the recipe reads image-text "
                          "pairs; set `input: {kind: document}` in the recipe (see manifests/recipes/obelics.yaml)")
    pairs = [p for p in matched if p.lower().endswith((".tar", ".tar.gz", ".tgz"))]
    if pairs and kind == DOCUMENT:
        raise CurateError(f"--input matches webdataset shards (e.g. {pairs[0]}) but the recipe reads web pages "
                          "(input.kind: document); pass WARC, .html, or url+html parquet/JSONL files")
    tars = {p.rsplit(".tar", 1)[0] for p in matched if p.endswith(".tar")}
    sidecars = [p for p in matched if p.endswith(".parquet") and p.rsplit(".parquet", 1)[0] in tars]
    if sidecars:
        raise CurateError(
            f"--input matches both shards and their metadata parquet (e.g. {sidecars[0]}); "
            "match only the .tar files, e.g. --input 'DIR/*.tar'"
        )
    return matched


def prepare_output(root: str, overwrite: bool, resume: tuple[str, ...] = ()) -> None:
    """Refuse a used directory unless --overwrite; an interrupted run whose recipe can resume keeps
    what it already fetched (`resume`: path prefixes, e.g. raw/ of a chained download) and redoes the rest."""
    state = output_state(root)
    if problem := output_problem(state, root, overwrite, resume):
        raise CurateError(problem)
    try:
        if state is RunDirState.INTERRUPTED and resume and not overwrite:
            log.info("%s holds an interrupted run: keeping %s, redoing the rest", root, ", ".join(resume))
            clear_run_dir(root, OURS, keep_prefixes=resume)
        else:
            clear_run_dir(root, OURS)
    except RunDirError as err:
        raise CurateError(f"{err}; vlcurate deletes only what it wrote, even with --overwrite") from None


def output_state(root: str) -> RunDirState:
    try:
        return inspect_run_dir(root, OURS)
    except RunDirError as err:  # a file, or files vlcurate did not write
        raise CurateError(f"{err}; vlcurate deletes only what it wrote, even with --overwrite") from None


def output_problem(state: RunDirState, root: str, overwrite: bool, resume: tuple[str, ...] = ()) -> str | None:
    """Why a run may not write into root as it is (a dry run says the same), or None."""
    if state is RunDirState.FRESH or overwrite or (state is RunDirState.INTERRUPTED and resume):
        return None
    if state is RunDirState.INTERRUPTED:
        return (f"output {root} holds an interrupted run (no manifest.json: stopped before it finished); pass "
                "--overwrite to run it again from the start")
    return f"output {root} is not empty; pass --overwrite to replace a previous run"


def resumable(recipe: Recipe) -> tuple[str, ...]:
    """What an interrupted run of this recipe keeps: its download, its fetched images."""
    keep = (f"{RAW_DIR}/",) if recipe.download is not None else ()
    for entry in recipe.stages:
        if entry.spec.keeps_on_resume is not None:
            keep += entry.spec.keeps_on_resume(entry.config)
    return keep


def refuse_inputs_inside_output(paths: list[str], root: str) -> None:
    """--overwrite would delete them (and a run would read its own output)."""
    def norm(p: str) -> str:
        return p.rstrip("/") if "://" in p else os.path.abspath(p)

    out = norm(root) + "/"
    inside = [p for p in paths if norm(p).startswith(out)]
    if inside:
        raise CurateError(f"--input matches files inside --output {root} (e.g. {inside[0]}); write to another "
                          "directory")


def _write_summary(_, root: str, shards, rejected_files, reasons, tallies, inputs) -> None:
    summary = {"shards": sorted(shards, key=lambda s: s["name"]),
               "rejected": sorted(rejected_files, key=lambda r: r["name"]),
               "reasons": [[*key, n] for key, n in sorted(reasons)],
               "tallies": [[*key, n] for key, n in sorted(tallies)],
               "inputs": dict(inputs)}
    atomic_write_bytes(f"{root}/{SUMMARY}", json.dumps(summary).encode("utf-8"))


def _stage_reports(root: str) -> tuple[dict, list[dict]]:
    """Summaries stages left in _run/reports/STAGE.json, and the files they wrote under reports/."""
    fs, path = fsspec.core.url_to_fs(root)
    reports, files = {}, []
    for found in sorted(glob_under(fs, f"{path}/{STAGE_REPORTS}", "*.json")):
        with fs.open(found, "rt") as f:
            report = json.load(f)
        reports[found.rsplit("/", 1)[-1][: -len(".json")]] = report["summary"]
        files.extend(report["files"])
    return reports, sorted(files, key=lambda f: f["name"])


def build_pipeline(p: beam.Pipeline, recipe: Recipe, paths: list[str], root: str,
                   allow_private_networks: bool = False, limit: int | None = None, progress: bool = False) -> None:
    read = p | "ReadInputs" >> ReadRecords(paths, recipe.input, root if progress else None, limit)
    kept, rejected, tallies = read.records, [read[REJECTED]], []
    context = StageContext(recipe.seed, root, allow_private_networks)
    for i, entry in enumerate(recipe.stages):
        outputs = kept | f"{i:02d}_{entry.name}" >> entry.spec.build(entry.config, context)
        kept = outputs.kept
        rejected.append(outputs.rejected)
        if outputs.tallies is not None:
            tallies.append(outputs.tallies)
    record_type = Document if output_kind(recipe) == DOCUMENT else Sample
    shards, sink_rejected = kept | "WriteShards" >> WriteShards(root, recipe.output.samples_per_shard, recipe.seed,
                                                                record_type, recipe.output.image_member)
    every_rejection = all_rejections("AllRejections", *rejected, sink_rejected)
    rejection_files = every_rejection | "WriteRejections" >> WriteRejections(
        root, recipe.output.rejected_rows_per_file, recipe.seed)
    reason_count = beam.typehints.Tuple[beam.typehints.Tuple[str, str, str], int]
    reasons = (every_rejection
               | "ReasonKey" >> beam.Map(lambda r: ((r.stage, r.kind, r.reason), 1)).with_output_types(reason_count)
               | "CountReasons" >> beam.CombinePerKey(sum).with_output_types(reason_count))
    no_tally = p | "NoTallies" >> beam.Create([]).with_output_types(Tally)
    tally_counts = ((no_tally, *tallies) | "AllTallies" >> beam.Flatten().with_output_types(Tally)
                    | "CountTallies" >> beam.CombinePerKey(sum).with_output_types(Tally))
    inputs = read[COUNTED] | "CountInput" >> beam.CombinePerKey(sum).with_output_types(
        beam.typehints.Tuple[str, int])
    _ = (p | "Finish" >> beam.Create([None])
         | "WriteSummary" >> beam.Map(
             _write_summary, root=root, shards=beam.pvalue.AsList(shards),
             rejected_files=beam.pvalue.AsList(rejection_files), reasons=beam.pvalue.AsList(reasons),
             tallies=beam.pvalue.AsList(tally_counts), inputs=beam.pvalue.AsList(inputs)))


def stage_busy_seconds(result) -> dict[str, float]:
    """Each stage's own compute time (`stage NAME`), summed over workers, from Beam's metrics: stages
    fuse, so wall time per stage does not exist; this is where the CPU went."""
    from apache_beam.metrics.metric import MetricsFilter

    try:
        counters = result.metrics().query(MetricsFilter().with_name(BUSY_US))["counters"]
    except Exception as err:  # a runner without metrics: timings without the per-stage part
        log.info("no per-stage timings: %s", err)
        return {}
    busy: dict[str, float] = {}
    for counter in counters:
        value = counter.committed if counter.committed is not None else counter.attempted
        name = f"stage {counter.key.metric.namespace}"
        busy[name] = busy.get(name, 0.0) + (value or 0) / 1e6
    return dict(sorted(busy.items()))


def preflight_stages(recipe: Recipe) -> Preflight:
    """Every stage's driver-side checks (files, weights, tags); models on devices are left to workers."""
    found = Preflight()
    for entry in recipe.stages:
        try:
            checked = entry.spec.preflight(entry.config)
        except (FileNotFoundError, ValueError, OSError) as err:
            raise CurateError(f"stage {entry.name} cannot start: {err}") from err
        found.models += checked.models
        found.deferred += checked.deferred
    for line in found.deferred:
        log.info("deferred to the workers: %s", line)
    return found


def pipeline_options(beam_args: list[str] | None) -> PipelineOptions:
    options = PipelineOptions(beam_args or [])
    if options.view_as(StandardOptions).runner is None:
        options.view_as(StandardOptions).runner = "DirectRunner"
    return options


def curate(recipe: Recipe, input_pattern: str, output: str, beam_args: list[str] | None = None,
           overwrite: bool = False, allow_private_networks: bool | None = None, limit: int | None = None,
           progress: bool = False) -> CurateResult:
    """Curate input shards; with a `download:` block in the recipe, input_pattern is a URL list
    that is downloaded first into OUTPUT/raw/ and the funnel starts at the URLs read. The output
    directory is locked for the whole run (a second run into it stops, naming the holder).
    `limit`: only the first N input records, in input file order; `progress`: bars on the terminal."""
    root = output.rstrip("/")
    options = pipeline_options(beam_args)
    problem = remote_runner_problem(recipe, input_pattern, root, options.view_as(StandardOptions).runner)
    if problem:  # before anything is read, written or downloaded: every worker would fail in its setup
        raise CurateError(problem)
    paths = None if recipe.download is not None else expand_inputs(input_pattern, recipe.input.kind)
    if paths is not None:
        refuse_inputs_inside_output(paths, root)
    else:  # the URL list and the distributor's package, before the lock creates the output directory
        check_download(recipe.download, input_pattern)
    try:
        with run_lock(root):
            return _curate(recipe, input_pattern, root, paths, options, overwrite, allow_private_networks,
                           limit, progress)
    except RunLockedError as err:
        raise CurateError(str(err)) from None


def _curate(recipe: Recipe, input_pattern: str, root: str, paths: list[str] | None, options: PipelineOptions,
            overwrite: bool, allow_private_networks: bool | None, limit: int | None = None,
            progress: bool = False) -> CurateResult:
    started = time.perf_counter()
    raw: DownloadResult | None = None
    if paths is None:
        prepare_output(root, overwrite, resumable(recipe))
        raw = download(recipe, input_pattern, f"{root}/{RAW_DIR}", allow_private_networks=allow_private_networks,
                       reuse_complete=True, limit=limit, progress=progress)
        paths = raw.shard_urls()
        if not paths:
            raise CurateError(f"the download kept no image (see {raw.manifest_url}); nothing to curate")
    else:
        prepare_output(root, overwrite, resumable(recipe))
    log.info("%d input file(s); output %s%s", len(paths), root, f"; the first {limit:,} records only" if limit else "")

    checked = preflight_stages(recipe)
    preflight_s = time.perf_counter() - started

    pipeline_started = time.perf_counter()
    with private_tempdir("vlcurate-beam-"), run_progress(root, len(paths), [e.name for e in recipe.stages], enabled=progress), beam.Pipeline(options=options) as p:
        build_pipeline(p, recipe, paths, root, bool(allow_private_networks), limit, progress)
    pipeline_s = time.perf_counter() - pipeline_started
    stage_s = stage_busy_seconds(p.result)
    # Workers in other processes wrote what the driver reads next; gcsfs answers from the listing it
    # cached before the pipeline (the run directory's check), which does not hold _run/summary.json.
    fsspec.core.url_to_fs(root)[0].invalidate_cache()

    with fsspec.open(f"{root}/{SUMMARY}", "rt") as f:
        summary = json.load(f)
    reasons = {(stage, kind, reason): n for stage, kind, reason, n in summary["reasons"]}
    tallies = {(stage, kind, event, reason): n for stage, kind, event, reason, n in summary["tallies"]}
    reports, report_files = _stage_reports(root)
    if unify_tables(root, summary["shards"]):  # one schema for metadata/*.parquet, before checksums are final
        log.info("metadata tables given one schema across shards")
    index_files = write_shard_index(root, summary["shards"])
    stage_order = [READ_STAGE, *(e.name for e in recipe.stages), SINK_STAGE]
    kept = {output_kind(recipe): sum(s["samples"] for s in summary["shards"])}
    by_kind = counts_by_kind(summary["inputs"], kept, reasons, tallies)
    funnel = build_funnel(stage_order, summary["inputs"], reasons, tallies)
    counts = total_counts(by_kind)
    # A file name that is not UTF-8 was one rejection; the manifest names it printably too.
    rejected, inputs = summary["rejected"], {"pattern": printable(input_pattern), "files": [printable(p) for p in paths]}
    if limit is not None:  # a trial on the first N records: the manifest says so
        inputs["limit"] = limit
    if raw is not None:  # the funnel starts at the URLs read; the download's rejections are part of the table
        prior = raw.manifest
        funnel = prior.funnel + funnel
        by_kind[Sample.KIND] = by_kind[Sample.KIND].model_copy(update={
            "input": prior.counts.input, "rejected": prior.counts.rejected + by_kind[Sample.KIND].rejected})
        counts = total_counts(by_kind)
        rejected = [{**f.model_dump(), "name": f"{RAW_DIR}/{f.name}"} for f in prior.rejected] + rejected
        inputs = {"url_list": input_pattern, "raw_manifest": f"{RAW_DIR}/manifest.json",
                  "raw_shards": len(paths), "urls": prior.counts.input}
    manifest = build_manifest(
        recipe, inputs=inputs, counts=counts, counts_by_kind=by_kind, funnel=funnel, shards=summary["shards"],
        rejected=rejected, packages=PACKAGES + (("img2dataset",) if raw else ()),
        versions={"models": checked.models, "deferred_checks": checked.deferred,
                  "runner": str(options.view_as(StandardOptions).runner),
                  "direct_running_mode": options.view_as(DirectOptions).direct_running_mode},
        shard_format_version=SHARD_FORMAT_VERSION,
        timings_s={"preflight": preflight_s, "pipeline": pipeline_s, **stage_s, "total": time.perf_counter() - started},
        reports=reports, report_files=report_files, index_files=index_files)
    return CurateResult(manifest, finish(root, manifest))
