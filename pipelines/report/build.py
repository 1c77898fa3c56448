"""report.html for a run: built from what the run wrote (manifest, rejection table, shard parquets,
a few images), never by running stages again. `finish` writes it before the manifest, which lists
it; `vlcurate report RUN` rebuilds it and rewrites the manifest's entry for it (the manifest is
still the last file written)."""

from __future__ import annotations

import logging
import time

from manifests.manifest import FileEntry, Manifest, read_manifest, write_manifest
from manifests.storage import atomic_write_bytes
from pipelines.drivers.funnel_table import kept_text
from pipelines.report import sections
from pipelines.report.page import Page
from pipelines.report.run_data import read_kept_table, read_rejected

log = logging.getLogger("vlcurate")

REPORT_NAME = "report.html"


def build_report(root: str, manifest: Manifest) -> str:
    started = time.perf_counter()
    seed = int(manifest.recipe.get("seed", 0) or 0)
    rejected = read_rejected(root, manifest)
    kept = read_kept_table(root, manifest)
    name = manifest.recipe.get("name", "vlcurate run")
    page = Page(f"vlcurate report: {name}")
    page.add("funnel", "Funnel", sections.funnel(manifest))
    page.add("rejections", "Rejections", sections.rejections(manifest, rejected, seed))
    page.add("scores", "Scores and cutoffs", sections.scores(manifest, rejected, kept))
    page.add("metaclip", "MetaCLIP balancing", sections.metaclip(root, manifest))
    page.add("grounding", "Grounded samples", sections.kept_samples(root, kept, seed, grounded=True))
    pairs = sections.kept_samples(root, kept, seed)
    page.add("kept", "Kept samples" if pairs else "Kept documents", pairs or sections.kept_documents(kept, seed))
    page.add("run", "Run", sections.run_info(manifest))
    c = manifest.counts
    subtitle = (f"{c.input:,} records read, {kept_text(manifest)} kept, {c.rejected:,} rejected; "
                f"created {manifest.created_utc}")
    html = page.render(subtitle)
    log.info("report: %d sections, %.0f KB, %.1f s", len(page.sections), len(html) / 1e3,
             time.perf_counter() - started)
    return html


def write_report(root: str, manifest: Manifest) -> FileEntry:
    written = atomic_write_bytes(f"{root}/{REPORT_NAME}", build_report(root, manifest).encode("utf-8"))
    return FileEntry(name=REPORT_NAME, bytes=written["bytes"], sha256=written["sha256"])


class ReportError(RuntimeError):
    """The page cannot be rebuilt; one line naming what is missing."""


def rebuild_report(root: str) -> str:
    """`vlcurate report RUN`: the page again (e.g. after an upgrade), and the manifest's entry for it."""
    root = root.rstrip("/")
    try:
        manifest = read_manifest(root)
    except (FileNotFoundError, NotADirectoryError):
        raise ReportError(f"{root} has no manifest.json: only a finished run has a report") from None
    try:
        entry = write_report(root, manifest)
    except FileNotFoundError as err:  # a file the manifest lists (a shard's parquet, a rejection table)
        raise ReportError(f"{root}: a file the report reads is missing ({err.filename or err}); "
                          f"`vlcurate verify {root}` lists what is missing") from None
    write_manifest(root, manifest.model_copy(update={"report": entry}))
    return f"{root}/{REPORT_NAME}"
