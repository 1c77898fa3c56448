"""The report's sections, each from the run's own accounting: run info, the funnel per record kind,
rejection reasons with thumbnails, score distributions with their cutoffs, MetaCLIP's balance,
grounded samples, and kept samples."""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from typing import Any

import fsspec
import pyarrow as pa
import yaml
from PIL import ImageDraw

from manifests.manifest import Manifest
from pipelines.report.page import data_uri, esc, grid, table, thumbnail
from pipelines.report.plots import funnel_bars, score_histogram
from pipelines.report.run_data import Rejected, images_for, pick, rejected_scores
from pipelines.stages.spec import Cutoff

log = logging.getLogger("vlcurate")

THUMBS_PER_REASON = 8
REASONS_WITH_THUMBS = 10
KEPT_SHOWN = 24
GROUNDED_SHOWN = 6


def recipe_stages(manifest: Manifest) -> list[tuple[str, dict[str, Any]]]:
    return [next(iter(item.items())) for item in manifest.recipe.get("stages", []) if isinstance(item, dict)]


def run_info(manifest: Manifest) -> str:
    versions = manifest.versions
    packages = versions.get("packages", {})
    rows = [["vlcurate", versions.get("vlcurate", "")], ["python", versions.get("python", "")],
            ["runner", versions.get("runner", "")], ["created (UTC)", manifest.created_utc],
            ["shard format", manifest.shard_format_version or ""]]
    rows += [[name, version] for name, version in sorted(packages.items())] if isinstance(packages, dict) else []
    models = [[m.get("stage", ""), m.get("name") or m.get("model", ""), m.get("sha256") or m.get("hash", ""),
               m.get("source") or m.get("path", "")] for m in versions.get("models", []) if isinstance(m, dict)]
    timings = [[name, f"{seconds:,.1f}"] for name, seconds in manifest.timings_s.items()]
    inputs = {k: v for k, v in manifest.inputs.items() if k != "files"}
    files = manifest.inputs.get("files") or []
    parts = [table(["", "version"], rows),
             "<h3>Models</h3>" + (table(["stage", "model", "sha256", "from"], models) if models
                                  else '<p class="note">none</p>'),
             "<h3>Timings (s)</h3>" + table(["step", "seconds"], timings, numeric={1}),
             "<h3>Inputs</h3><pre>" + esc(yaml.safe_dump(inputs, sort_keys=False).strip()) +
             (f"\n{len(files):,} file(s): " + esc(", ".join(files[:10])) + (" ..." if len(files) > 10 else "")
              if files else "") + "</pre>",
             "<h3>Recipe (resolved, defaults included)</h3><pre>" +
             esc(yaml.safe_dump(manifest.recipe, sort_keys=False, allow_unicode=True).strip()) + "</pre>"]
    return "".join(parts)


def _pct(n: int, of: int) -> str:
    return f"{n / of:.1%}" if of else ""


def funnel(manifest: Manifest) -> str:
    parts = []
    for kind in sorted({row.kind for row in manifest.funnel}, key=lambda k: (k != "sample", k)):
        rows = [row for row in manifest.funnel if row.kind == kind]
        counts = manifest.counts_by_kind.get(kind)
        cells, classes = [], []
        for row in rows:
            cells.append([row.stage, f"{row.input:,}", f"{row.rejected:,}", _pct(row.rejected, row.input),
                          f"{row.converted:,}" if row.converted else "", f"{row.produced:,}" if row.produced else "",
                          f"{sum(row.edits.values()):,}" if row.edits else "", f"{row.kept:,}", _pct(row.kept, row.input)])
            classes.append("stage")
            for reason, n in sorted(row.reasons.items(), key=lambda kv: -kv[1]):
                cells.append([f"  {reason}", "", f"{n:,}", _pct(n, row.input), "", "", "", "", ""])
                classes.append("")
        heading = f"<h3>{esc(kind)} records"
        if counts is not None:
            heading += (f": {counts.input:,} read, {counts.kept:,} kept ({_pct(counts.kept, counts.input + counts.produced)}),"
                        f" {counts.rejected:,} rejected")
        parts.append(heading + "</h3>")
        parts.append(table(["stage / reason", "in", "rejected", "%", "converted", "produced", "edits", "kept", "% kept"],
                           cells, numeric={1, 2, 3, 4, 5, 6, 7, 8}, row_classes=classes))
        if rows:
            uri = funnel_bars([r.stage for r in rows], [r.kept for r in rows], [r.rejected for r in rows], kind)
            parts.append(f'<div class="plots"><img src="{uri}" alt="funnel"></div>')
    return "".join(parts)


def rejections(manifest: Manifest, rejected: Rejected, seed: int) -> str:
    total = defaultdict(int)
    for row in manifest.funnel:
        for reason, n in row.reasons.items():
            total[(row.stage, row.kind, reason)] += n
    if not total:
        return '<p class="note">Nothing was rejected.</p>'
    top = sorted(total.items(), key=lambda kv: -kv[1])
    read = manifest.counts.input + manifest.counts.produced
    parts = [table(["stage", "kind", "reason", "records", "% of all"],
                   [[s, k, r, f"{n:,}", _pct(n, read)] for (s, k, r), n in top[:30]], numeric={3, 4})]
    # A few rejected samples per reason, read back from their input tars (stage `read` rejections
    # and URL-list downloads have no image to show).
    by_reason: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, (stage, reason, kind) in enumerate(zip(rejected.stage, rejected.reason, rejected.kind)):
        if kind == "sample":
            by_reason[(stage, reason)].append(i)
    shown = [(s, r) for (s, k, r), _ in top if k == "sample" and (s, r) in by_reason][:REASONS_WITH_THUMBS]
    chosen = {sr: pick([rejected.key[i] for i in by_reason[sr]], THUMBS_PER_REASON, seed) for sr in shown}
    source_of = {rejected.key[i]: rejected.source[i] for sr in shown for i in by_reason[sr]}
    detail_of = {rejected.key[i]: rejected.detail[i] for sr in shown for i in by_reason[sr]}
    where: dict[str, list[str]] = defaultdict(list)
    for keys in chosen.values():
        for key in keys:
            where[source_of[key]].append(key)
    found = images_for(where)
    for (stage, reason), keys in chosen.items():
        cells = [_cell(found.get(k), k, detail_of.get(k)) for k in keys if k in found]
        if cells:
            of = len(by_reason[(stage, reason)])
            parts.append(f"<h3>{esc(stage)}: {esc(reason)} ({len(cells)} of {of:,})</h3>" + grid(cells))
    left = [r for (s, k, r), _ in top if k == "sample" and (s, r) in by_reason][REASONS_WITH_THUMBS:]
    if left:
        parts.append(f'<p class="note">Examples are shown for the {REASONS_WITH_THUMBS} most frequent reasons; '
                     f"not for {', '.join(esc(r) for r in left)}.</p>")
    return "".join(parts)


def _shorten(text: str, limit: int) -> str:
    """At most `limit` characters, cut at a word boundary with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0] if " " in text[:limit] else text[:limit]
    return cut + "…"


def _cell(found: tuple[Any, str] | None, key: str, detail: str | None = None) -> tuple[str | None, str]:
    """A thumbnail and its text: the caption, after why the record was dropped when it was."""
    why = f"[{_shorten(detail, 80)}] " if detail else ""
    if found is None:
        return None, why + key
    image, caption = found
    if isinstance(image, str):  # the image's own problem (undecodable, too many pixels, ...)
        return None, f"{why}{image} {caption[:140]}"
    return thumbnail(image), why + caption[:140]


def _with_derived(values: dict[str, Any]) -> dict[str, Any]:
    """Image sides and aspect, which the size rules cut on: from the size they judged (the original
    size img2dataset recorded, image_judged_*, when it differs from the decoded one), else the decoded."""
    w, h = values.get("image_judged_width", values.get("image_width")), \
        values.get("image_judged_height", values.get("image_height"))
    if isinstance(w, (int, float)) and isinstance(h, (int, float)) and min(w, h) > 0:
        values = {**values, "image_min_side": min(w, h), "image_aspect": max(w, h) / min(w, h)}
    return values


def _kept_rows(kept: pa.Table | None) -> list[dict[str, Any]]:
    """The numbers stages measured on each kept record (documents: in general_metadata)."""
    if kept is None:
        return []
    if "general_metadata" in kept.column_names:
        return [json.loads(g) if g else {} for g in kept.column("general_metadata").to_pylist()]
    numeric = [n for n in kept.column_names
               if pa.types.is_integer(kept.schema.field(n).type) or pa.types.is_floating(kept.schema.field(n).type)]
    return kept.select(numeric).to_pylist()


def _numbers(rows: list[dict[str, Any]], name: str) -> list[float]:
    return [float(r[name]) for r in rows if isinstance(r.get(name), (int, float)) and not isinstance(r.get(name), bool)]


def scores(manifest: Manifest, rejected: Rejected, kept: pa.Table | None) -> str:
    """A histogram of every score each stage of the recipe measured, kept and rejected records
    together, with the recipe's cutoffs on it."""
    from pipelines.stages import registry

    specs = registry()
    kept_rows = [_with_derived(r) for r in _kept_rows(kept)]
    dropped: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for stage, values in rejected_scores(rejected):
        for name, value in _with_derived(values).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                dropped[name].append((stage, float(value)))
    plots, notes, plotted = [], [], set()
    stages = recipe_stages(manifest)
    order = [stage for stage, _ in stages]
    for position, (stage, config) in enumerate(stages):
        spec = specs.get(stage)
        if spec is None:
            continue
        cutoffs: dict[str, list[Cutoff]] = defaultdict(list)
        if spec.cutoffs is not None:
            try:
                for cutoff in spec.cutoffs(spec.config.model_validate(config)):
                    cutoffs[cutoff.annotation].append(cutoff)
            except Exception as err:  # a recipe from another version: plots without cutoffs
                log.info("report: no cutoffs for %s (%s)", stage, err)
        for name in dict.fromkeys([*spec.provides, *cutoffs]):
            kept_values, rejected_values = _numbers(kept_rows, name), dropped.get(name, [])
            if (not kept_values and not rejected_values) or (name in plotted and name not in cutoffs):
                continue  # a score a later stage reuses (tmars keeps clipscore's) is drawn once, by its maker
            plotted.add(name)
            passed = kept_values + [v for s, v in rejected_values if s in order[position + 1:]]
            found = [_found_cutoff(c, passed) for c in cutoffs.get(name, [])]
            uri, summary = score_histogram(name, kept_values, rejected_values, stage, [c for c in found if c])
            plots.append(f'<img src="{uri}" alt="{esc(name)}" title="{esc(summary)}">')
            notes.append([stage, name, summary])
    if not plots:
        return ""
    return f'<div class="plots">{"".join(plots)}</div>' + table(["stage", "score", "cutoff"], notes)


def _found_cutoff(cutoff: Cutoff, passed: list[float]) -> Cutoff | None:
    """A cutoff the data set at run time (top_fraction): the lowest score among records that passed the
    stage (kept, or dropped by a later stage); None when none passed."""
    if cutoff.value is not None:
        return cutoff
    if not passed:
        return None
    return Cutoff(cutoff.annotation, min(passed) if cutoff.keep == "above" else max(passed), cutoff.keep,
                  f"{cutoff.setting}: cutoff")


def metaclip(root: str, manifest: Manifest) -> str:
    summary = manifest.reports.get("metaclip")
    if not summary:
        return ""
    parts = [f"<pre>{esc(yaml.safe_dump(summary, sort_keys=False).strip())}</pre>"]
    png = next((f.name for f in manifest.report_files if f.name.endswith(".png")), None)
    if png:
        with fsspec.open(f"{root}/{png}", "rb") as f:
            parts.append(f'<div class="plots"><img style="width:520px" src="{data_uri(f.read(), "image/png")}" '
                         f'alt="MetaCLIP entry counts"></div>')
    return "".join(parts)


def kept_samples(root: str, kept: pa.Table | None, seed: int, grounded: bool = False) -> str:
    """A grid of kept pairs; with `grounded`, samples with boxes drawn and their Kosmos-2 text."""
    if kept is None or "caption" not in kept.column_names:
        return ""
    keys, shards = kept.column("key").to_pylist(), kept.column("_shard").to_pylist()
    rendering = kept.column("grounding_kosmos2").to_pylist() if "grounding_kosmos2" in kept.column_names else None
    candidates = [k for i, k in enumerate(keys) if not grounded or (rendering and rendering[i])]
    if not candidates:
        return ""
    chosen = pick(candidates, GROUNDED_SHOWN if grounded else KEPT_SHOWN, seed)
    shard_of = dict(zip(keys, shards))
    where: dict[str, list[str]] = defaultdict(list)
    for key in chosen:
        where[f"{root}/{shard_of[key]}"].append(key)
    found = images_for(where)
    if not grounded:
        return grid([_cell(found.get(k), k) for k in chosen])
    fields = dict(zip(keys, kept.column("json").to_pylist()))
    cells = []
    for key in chosen:
        image, _ = found.get(key, (None, ""))
        if image is None or isinstance(image, str):
            continue
        layout = json.loads(fields[key])
        draw = ImageDraw.Draw(image)
        for phrase in layout.get("grounding", []):
            for x1, y1, x2, y2, _score in phrase.get("boxes", [])[:3]:
                w, h = image.size
                draw.rectangle([x1 * w, y1 * h, x2 * w, y2 * h], outline=(255, 40, 40), width=max(2, w // 100))
        cells.append(f'<div style="display:flex;gap:12px;margin:8px 0"><img style="width:256px" '
                     f'src="{thumbnail(image, 256)}" alt=""><pre style="white-space:pre-wrap;flex:1">'
                     f'{esc(layout.get("grounding_kosmos2", ""))}</pre></div>')
    return "".join(cells)


def kept_documents(kept: pa.Table | None, seed: int) -> str:
    if kept is None or "texts" not in kept.column_names:
        return ""
    rows = kept.to_pylist()
    chosen = set(pick([r["key"] for r in rows], KEPT_SHOWN // 2, seed))
    cells = []
    for row in rows:
        if row["key"] in chosen:
            text = " ".join(t for t in row["texts"] if t)
            cells.append([row["url"], sum(1 for i in row["images"] if i), len(text.split()), text[:300]])
    return table(["url", "images", "words", "text (start)"], cells, numeric={1, 2})
