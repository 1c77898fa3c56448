"""`vlcurate download`: a URL list -> raw webdataset shards with img2dataset, every URL accounted for.

1. Read the URL list; refuse unsafe URLs (pipelines never fetch them) as `download` rejections.
2. Write the safe rows, each with its row number (`vlc_row`), as img2dataset's input.
3. Run img2dataset (guarded opener in its workers, see download_guard.py) into DIR/shards/.
4. Account from img2dataset's per-shard parquet, which lists every row with its status: successes
   are in the tars; failures become rejections with a reason; rows of a shard img2dataset never
   finished become `download_incomplete`. Then DIR/rejected/ and DIR/manifest.json (last).

A shard is finished when img2dataset has written its NNNNN_stats.json. A rerun into a directory
without a manifest resumes: img2dataset skips finished shards (incremental mode). A download in which
img2dataset finished no shard at all stops without a manifest, so that its rerun resumes.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import PurePosixPath

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from filters.download_reasons import download_reason
from filters.records import SAMPLE
from filters.sample import Rejection
from filters.url_safety import redact_credentials, request_url, url_problem
from manifests.manifest import Counts, Manifest, build_funnel, read_manifest
from manifests.recipe import DownloadConfig, Recipe
from manifests.storage import atomic_write_bytes, glob_under, sha256_of
from pipelines.drivers.finish import build_manifest, finish
from pipelines.drivers.progress import download_progress, output_to_file
from pipelines.io.rejection_files import write_rejection_files
from pipelines.io.run_dir import DOWNLOAD_FILES, RunDirError, RunDirState, clear_run_dir, inspect_run_dir, ours_matcher
from pipelines.io.run_lock import RunLockedError, run_lock
from pipelines.io.scratch import private_tempdir
from pipelines.io.url_lists import ROW_PROBLEM, check_url_list, read_url_list

log = logging.getLogger("vlcurate")
STAGE = "download"
SHARDS = "shards"
INPUT = "_input"
OURS = ours_matcher(DOWNLOAD_FILES)  # what --overwrite may delete
ROW = "vlc_row"
# The package each img2dataset distributor imports (multiprocessing is the standard library's).
DISTRIBUTOR_PACKAGES = {"ray": "ray", "pyspark": "pyspark"}


class DownloadError(RuntimeError):
    """A download that cannot start or whose result does not add up."""


@dataclass
class DownloadResult:
    manifest: Manifest
    manifest_url: str
    root: str

    def shard_urls(self) -> list[str]:
        return [f"{self.root}/{s.name}" for s in self.manifest.shards]


def download(recipe: Recipe, url_list: str, output: str, *, overwrite: bool = False,
             allow_private_networks: bool | None = None, reuse_complete: bool = False,
             limit: int | None = None, progress: bool = False) -> DownloadResult:
    """The output directory is locked for the whole download (a second run into it stops).
    `limit`: only the list's first N rows; `progress`: one bar over the whole list (img2dataset's
    own per-shard lines go to a log file)."""
    root = output.rstrip("/")
    check_download(recipe.download or DownloadConfig(), url_list)  # before the lock creates the directory
    try:
        with run_lock(root):
            return _download(recipe, url_list, root, overwrite, allow_private_networks, reuse_complete, limit,
                             progress)
    except RunLockedError as err:
        raise DownloadError(str(err)) from None


def check_download(config: DownloadConfig, url_list: str) -> None:
    """What a download needs before it writes anything (also a dry run's checks): the URL list, and
    the distributor's package. img2dataset never names a missing one: without ray it distributes
    nothing and returns; without pyspark it dies mid-run, leaving its input shards behind."""
    check_url_list(url_list)
    package = DISTRIBUTOR_PACKAGES.get(config.distributor)
    if package and importlib.util.find_spec(package) is None:
        raise DownloadError(f"download.distributor: {config.distributor} needs the {package!r} package "
                            f"(pip install {package}), or use distributor: multiprocessing")


def _download(recipe: Recipe, url_list: str, root: str, overwrite: bool, allow_private_networks: bool | None,
              reuse_complete: bool, limit: int | None = None, progress: bool = False) -> DownloadResult:
    config = recipe.download or DownloadConfig()
    allow_private = config.allow_private_networks if allow_private_networks is None else allow_private_networks
    started = time.perf_counter()
    try:
        state = inspect_run_dir(root, OURS)
    except RunDirError as err:
        raise DownloadError(str(err)) from None
    if state is RunDirState.COMPLETE and reuse_complete and not overwrite:
        manifest = read_manifest(root)
        earlier = manifest.inputs.get("url_list")
        if isinstance(earlier, str) and _same_place(earlier) != _same_place(url_list):
            raise DownloadError(f"{root} holds a finished download of {earlier}, not of {url_list}; "
                                "pass --overwrite to start again with the new list")
        rows = read_url_list(url_list, config.url_column, config.caption_column).num_rows
        wanted = rows if limit is None else min(rows, limit)
        if manifest.inputs.get("urls") != wanted:  # --limit then, not now (or the list has grown)
            raise DownloadError(f"{root} holds a finished download of {manifest.inputs.get('urls')} URLs of "
                                f"{url_list}, this run reads {wanted}; pass --overwrite to download them")
        log.info("download in %s is complete; reusing it", root)
        return DownloadResult(manifest, f"{root}/manifest.json", root)
    if state is RunDirState.COMPLETE and not overwrite:
        raise DownloadError(f"{root} holds a finished download; pass --overwrite to replace it")
    if state is RunDirState.INTERRUPTED and not (overwrite or config.incremental):
        raise DownloadError(f"{root} holds an interrupted download and incremental is off; pass --overwrite")
    if overwrite:
        try:
            clear_run_dir(root, OURS)
        except RunDirError as err:
            raise DownloadError(str(err)) from None

    table = read_url_list(url_list, config.url_column, config.caption_column)
    if limit is not None:
        table = table.slice(0, limit)
    urls, captions = table.column("url").to_pylist(), table.column("caption").to_pylist()
    unsafe, safe_rows = _check_urls(urls, url_list, allow_private, table.column(ROW_PROBLEM).to_pylist())

    resuming = state is RunDirState.INTERRUPTED and not overwrite
    extras = {name: table.column(name).to_pylist() for name in table.column_names
              if name not in ("url", "caption", ROW_PROBLEM)}
    input_url = _write_input(root, safe_rows, urls, captions, resuming, extras)
    checked = time.perf_counter()
    if safe_rows:
        with _quiet_img2dataset(progress, f"{root}/{SHARDS}", len(safe_rows)):
            _run_img2dataset(config, input_url, f"{root}/{SHARDS}", allow_private,
                             has_captions=config.caption_column is not None, extra_columns=sorted(extras))
            _require_a_finished_shard(root, len(safe_rows), config.samples_per_shard)  # inside: shows its log
    fetched = time.perf_counter()
    shards, fetched_rejections, seen = _account_shards(root, url_list)
    missing = sorted(set(safe_rows) - seen)
    if missing and not config.allow_incomplete:
        # img2dataset catches each URL's errors; a shard it gave up on whole met a full disk, a killed
        # worker, a lost bucket: infrastructure. Recording it as finished would make a rerun refuse.
        planned = math.ceil(len(safe_rows) / config.samples_per_shard)
        raise DownloadError(
            f"img2dataset finished {len(shards)} of {planned} shard(s) of {root}: {len(missing):,} URL(s) not "
            "fetched (its output above says why, e.g. a full disk); fix that and "
            + ("rerun the same command to resume" if config.incremental else
               "rerun with --overwrite (download.incremental is off, so it cannot resume)")
            + ", or set download.allow_incomplete to record them as download_incomplete")
    # Shards img2dataset gave up on (download.allow_incomplete): recorded, so the rerun needs --overwrite.
    incomplete = [Rejection(f"row{r:09d}", url_list, urls[r], STAGE, "download_incomplete",
                            "img2dataset did not finish this URL's shard; --overwrite downloads the list again")
                  for r in missing]
    rejections = unsafe + fetched_rejections + incomplete
    rejected_files = write_rejection_files(root, STAGE, rejections, recipe.output.rejected_rows_per_file)

    reasons: dict[tuple[str, str, str], int] = {}
    for r in rejections:
        reasons[(STAGE, SAMPLE, r.reason)] = reasons.get((STAGE, SAMPLE, r.reason), 0) + 1
    counts = Counts(input=len(urls), kept=sum(s["samples"] for s in shards), rejected=len(rejections))
    manifest = build_manifest(
        recipe, inputs={"url_list": url_list, "urls": len(urls), "resumed": resuming}, counts=counts,
        counts_by_kind={SAMPLE: counts}, funnel=build_funnel([STAGE], {SAMPLE: len(urls)}, reasons),
        shards=shards, rejected=rejected_files, packages=("img2dataset", "webdataset", "pyarrow"),
        timings_s={"url_checks": checked - started, "img2dataset": fetched - checked,
                   "accounting": time.perf_counter() - fetched, "total": time.perf_counter() - started})
    return DownloadResult(manifest, finish(root, manifest), root)


def _same_place(path: str) -> str:
    return path.rstrip("/") if "://" in path else os.path.abspath(path)


def _check_urls(urls: list, url_list: str, allow_private: bool,
                row_problems: list[str | None] | None = None) -> tuple[list[Rejection], list[int]]:
    """Rejections for the URLs pipelines never fetch (and rows the list could not hold whole), and the
    rows of the others."""
    unsafe: list[Rejection] = []
    safe_rows: list[int] = []
    for row, url in enumerate(urls):
        broken = row_problems[row] if row_problems else None
        problem = ("url_list_bad_row", broken) if broken else url_problem(url, allow_private_networks=allow_private)
        if problem:
            unsafe.append(Rejection(f"row{row:09d}", url_list, redact_credentials(url) if isinstance(url, str) else None,
                                    STAGE, *problem))
        else:
            safe_rows.append(row)
    log.info("%d URLs read from %s: %d to fetch, %d refused before fetching", len(urls), url_list,
             len(safe_rows), len(unsafe))
    private = sum(r.reason == "url_private_address" for r in unsafe)
    if private:  # the rule is right for web lists, but a list of one's own servers otherwise just fails
        log.warning("%d URL(s) refused as loopback/private addresses (url_private_address); "
                    "--allow-private-networks lifts this rule for data on your own network", private)
    return unsafe, safe_rows


def _write_input(root: str, safe_rows: list[int], urls: list, captions: list, resuming: bool,
                 extras: dict[str, list] | None = None) -> str:
    """img2dataset's input: the safe rows with their row numbers and the list's other columns. A
    resume must see the same rows."""
    # Fetched as a browser sends them (http.client takes ASCII only: `é` in a path was download_failed).
    table = pa.table({"url": [request_url(urls[r]) for r in safe_rows], "caption": [captions[r] for r in safe_rows],
                      ROW: pa.array(safe_rows, pa.int64()),
                      **{name: [values[r] for r in safe_rows] for name, values in sorted((extras or {}).items())}})
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer)
    data = buffer.getvalue().to_pybytes()
    url = f"{root}/{INPUT}/urls.parquet"
    fs, path = fsspec.core.url_to_fs(url)
    if resuming and fs.exists(path):
        with fs.open(path, "rb") as f:
            if pq.read_table(f).equals(table):
                log.info("resuming the interrupted download in %s", root)
                return url
        raise DownloadError(f"{root} holds an interrupted download of a different URL list or recipe; "
                            "pass --overwrite to start again")
    atomic_write_bytes(url, data)
    return url


@contextmanager
def _quiet_img2dataset(progress: bool, shards_url: str, urls: int) -> Iterator[None]:
    """With `progress`: img2dataset's output (a line per shard, from its own processes) goes to a log
    file, and one bar over all URLs is drawn instead; the log's tail is shown if the download fails.
    Without it, the lines are shown as they come (CI logs), unless vlcurate's log is set above INFO
    (--quiet): they are INFO-level chatter, so then they go to the log file alone."""
    if not progress and log.isEnabledFor(logging.INFO):
        yield
        return
    fd, log_path = tempfile.mkstemp(prefix="vlcurate-img2dataset-", suffix=".log")
    os.close(fd)
    try:
        with output_to_file(log_path) as terminal, (
                download_progress(shards_url, urls, stream=terminal) if progress else nullcontext()):
            yield
    except Exception:
        with open(log_path, "rb") as f:
            tail = f.read()[-4000:].decode("utf-8", "replace")
        sys.stderr.write(f"img2dataset's output (the end of {log_path}):\n{tail}\n")
        raise
    except BaseException:  # Ctrl-C or SIGTERM: its workers' tracebacks say only that they were stopped
        os.unlink(log_path)
        raise
    os.unlink(log_path)


def _run_img2dataset(config: DownloadConfig, input_url: str, shards_url: str, allow_private: bool,
                     has_captions: bool, extra_columns: list[str] = ()) -> None:
    from pipelines.io.download_guard import guarded_img2dataset  # imports img2dataset: only when downloading

    directives = list(config.disallowed_header_directives) if config.honor_robots_tag else []
    with private_tempdir("vlcurate-img2dataset-"), guarded_img2dataset(allow_private, config.max_image_bytes, config.max_pixels,
                             config.deadline) as img2dataset_download:
        img2dataset_download(
            url_list=input_url, input_format="parquet", url_col="url",
            caption_col="caption" if has_captions else None, save_additional_columns=[ROW, *extra_columns],
            output_folder=shards_url, output_format="webdataset",
            processes_count=config.processes, thread_count=config.threads,
            number_sample_per_shard=config.samples_per_shard, image_size=config.image_size,
            resize_mode=config.resize_mode, resize_only_if_bigger=config.resize_only_if_bigger,
            encode_format=config.encode_format, encode_quality=config.encode_quality,
            min_image_size=config.min_image_size,
            max_image_area=config.max_image_area or math.inf, max_aspect_ratio=config.max_aspect_ratio or math.inf,
            retries=config.retries, timeout=config.timeout, user_agent_token=config.user_agent_token,
            # Always "incremental": we clear the directory ourselves for --overwrite, and img2dataset's
            # "overwrite" mode deletes the _tmp folder it has just created (FileNotFoundError on *.feather).
            disallowed_header_directives=directives, incremental_mode="incremental",
            distributor=config.distributor, enable_wandb=False, compute_hash="sha256",
        )


def _require_a_finished_shard(root: str, urls: int, per_shard: int) -> None:
    """img2dataset returns normally when every shard failed (it only prints why) or its distributor did
    nothing. Recording that as a finished download of `download_incomplete` rows would make the
    directory one that a rerun refuses; stopping leaves it interrupted, so the rerun resumes."""
    fs, base = fsspec.core.url_to_fs(f"{root}/{SHARDS}")
    if not glob_under(fs, base, "*_stats.json"):
        raise DownloadError(f"img2dataset finished none of the {math.ceil(urls / per_shard)} shard(s) of {root} "
                            "(its output above says why); fix that and rerun the same command to resume")


def _account_shards(root: str, url_list: str) -> tuple[list[dict], list[Rejection], set[int]]:
    """Shard entries for finished shards, rejections for their failed rows, and the rows they cover."""
    fs, base = fsspec.core.url_to_fs(f"{root}/{SHARDS}")
    shards, rejections, seen = [], [], set()
    for stats in sorted(glob_under(fs, base, "*_stats.json")):
        stem = PurePosixPath(stats).name.removesuffix("_stats.json")
        with fs.open(f"{base}/{stem}.parquet", "rb") as f:
            rows = pq.read_table(f, columns=["key", "url", "status", "error_message", ROW]).to_pylist()
        for row in rows:
            seen.add(row[ROW])
            if row["status"] != "success":
                reason = download_reason(row["status"], row["error_message"])
                rejections.append(Rejection(row["key"], url_list, row["url"], STAGE, reason,
                                            row["error_message"] or row["status"] or ""))
        tar_name, parquet_name = f"{SHARDS}/{stem}.tar", f"{SHARDS}/{stem}.parquet"
        shards.append({
            "name": tar_name, "samples": sum(r["status"] == "success" for r in rows),
            "bytes": fs.size(f"{base}/{stem}.tar"), "sha256": sha256_of(f"{root}/{tar_name}"),
            "metadata": {"name": parquet_name, "bytes": fs.size(f"{base}/{stem}.parquet"),
                         "sha256": sha256_of(f"{root}/{parquet_name}")},
        })
    # A tar without its stats file is a shard img2dataset did not finish: not part of the dataset.
    done = {PurePosixPath(s["name"]).stem for s in shards}
    for partial in glob_under(fs, base, "*.tar") + glob_under(fs, base, "*.parquet"):
        if PurePosixPath(partial).stem not in done:
            fs.rm(partial)
    return shards, rejections, seen
