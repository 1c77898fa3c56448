"""How every driver ends a run: assemble the manifest, check the accounting per record kind,
clear the scratch directory, write the dataset card (README.md) and the report (report.html), and
write manifest.json last (its presence marks a complete run)."""

from __future__ import annotations

import logging
import platform
from datetime import datetime, timezone
from typing import Any

import fsspec

from filters.model_files import package_version
from manifests.manifest import Counts, FileEntry, Manifest, StageFunnel, check_accounting, write_manifest
from manifests.storage import atomic_write_bytes
from manifests.recipe import Recipe
from pipelines.drivers.dataset_card import CARD_NAME, dataset_card, licenses_seen
from pipelines.report.build import write_report

log = logging.getLogger("vlcurate")

RUN_DIR = "_run"  # scratch: exists only while a run finishes (or after an accounting failure)


def build_manifest(recipe: Recipe, *, inputs: dict[str, Any], counts: Counts, funnel: list[StageFunnel],
                   shards: list[dict], rejected: list[dict], packages: tuple[str, ...], timings_s: dict[str, float],
                   counts_by_kind: dict[str, Counts] | None = None, versions: dict[str, Any] | None = None,
                   reports: dict[str, Any] | None = None, report_files: list[dict] | None = None,
                   shard_format_version: int | None = None, index_files: list[dict] | None = None) -> Manifest:
    return Manifest(
        shard_format_version=shard_format_version,
        created_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        recipe=recipe.resolved(),
        inputs=inputs,
        counts=counts,
        counts_by_kind=counts_by_kind or {},
        funnel=funnel,
        shards=shards,
        rejected=rejected,
        versions={"vlcurate": package_version("vlcurate"), "python": platform.python_version(),
                  "packages": {name: package_version(name) for name in packages}, **(versions or {})},
        timings_s={k: round(v, 3) for k, v in timings_s.items()},
        reports=reports or {},
        report_files=report_files or [],
        index_files=index_files or [],
    )


def finish(root: str, manifest: Manifest) -> str:
    """Check, clear _run/, write manifest.json; a broken count keeps _run/ and writes no manifest."""
    check_accounting(manifest.counts)
    for kind, counts in manifest.counts_by_kind.items():
        check_accounting(counts, kind)
    fs, path = fsspec.core.url_to_fs(root)
    if fs.exists(f"{path}/{RUN_DIR}"):
        fs.rm(f"{path}/{RUN_DIR}", recursive=True)
    card = atomic_write_bytes(f"{root}/{CARD_NAME}", dataset_card(manifest, licenses_seen(root, manifest)).encode("utf-8"))
    manifest = manifest.model_copy(update={"card": FileEntry(name=CARD_NAME, bytes=card["bytes"],
                                                             sha256=card["sha256"])})
    try:  # the page is a view of data already written: a bug in it must not cost the run
        manifest = manifest.model_copy(update={"report": write_report(root, manifest)})
    except Exception as err:
        log.warning("report.html was not written (%s: %s); the run is complete: `vlcurate report %s` retries",
                    type(err).__name__, err, root)
    except BaseException:  # Ctrl-C or SIGTERM while the page is drawn: the data is whole, keep the run
        write_manifest(root, manifest)
        log.warning("interrupted while writing report.html; the run is complete (manifest.json written): "
                    "`vlcurate report %s` draws the page", root)
        raise
    return write_manifest(root, manifest)
