"""What the experiment found: OUT/results.json (names read by outside checks) and OUT/index.html.

results.json: {"recipes": {NAME: {"samples_kept": N, "metrics": {METRIC: [one value per seed]}}},
               "filters": {STAGE: {NOISE: {"precision": P, "recall": R, "removed": n, "reached": r,
                                           "of": m, "recall_of_pool": n / m}}}, ...}
A filter's numbers come from the full recipe's run (every stage, in order) against the pool's
truth. Stages run in sequence, so a stage only sees what the earlier ones left: recall = the share
of that noise type's samples *reaching the stage* that it removed (0 when none reached it:
`reached` says so, and the page shows "-"); precision = the share of the stage's removals that
were of that type; recall_of_pool = removed / all of that type in the pool.
"dedup_pairs" says how many of semantic dedup's removals were a true pair: the sample and the
survivor it was matched to are an image and its planted near-duplicate (either way round: keeping
the copy and dropping the original is as right as the reverse, but the table counts the original
as "clean"); the rest were distinct scenes the embeddings could not tell apart.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from manifests.manifest import read_manifest
from manifests.storage import atomic_write_bytes
from pipelines.report.page import Page, esc, table

METRICS = ("val_loss", "cider_d", "concept_accuracy")
LOWER_IS_BETTER = {"val_loss"}


def filter_table(run_dir: Path, truth: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """stage -> noise type -> precision / recall of that stage's removals in `run_dir`."""
    noise_of = {row["key"]: row["noise"] for row in truth}
    totals = Counter(noise_of.values())
    manifest = read_manifest(run_dir)
    removed: dict[str, Counter] = {}
    for entry in manifest.rejected:
        for row in pq.read_table(run_dir / entry.name, columns=["key", "stage"]).to_pylist():
            noise = noise_of.get(row["key"])
            if noise is not None:  # a file-level rejection (a truncated tar) has no pool key
                removed.setdefault(row["stage"], Counter())[noise] += 1
    order = [stage for stage in dict.fromkeys(f.stage for f in manifest.funnel) if stage in removed]
    return stage_table(order, removed, totals)


def stage_table(order: list[str], removed: dict[str, Counter], totals: Counter) -> dict[str, dict[str, dict]]:
    """The per-stage table from removal counts, stages in run order (what reached a stage is the
    pool less what the stages before it removed)."""
    out, gone = {}, Counter()
    for stage in order:
        by_noise, total = removed[stage], sum(removed[stage].values())
        reached = {noise: totals[noise] - gone[noise] for noise in totals}
        out[stage] = {noise: {"precision": round(by_noise[noise] / total, 4) if total else 0.0,
                              "recall": round(by_noise[noise] / reached[noise], 4) if reached[noise] else 0.0,
                              "removed": by_noise[noise], "reached": reached[noise], "of": totals[noise],
                              "recall_of_pool": round(by_noise[noise] / totals[noise], 4) if totals[noise] else 0.0}
                      for noise in sorted(totals)}
        gone += by_noise
    return out


def dedup_pairs(run_dir: Path, truth: list[dict[str, Any]]) -> dict[str, int]:
    """Semantic dedup's removals in `run_dir`, classified by classify_dedup_removals."""
    rows = [row for entry in read_manifest(run_dir).rejected
            for row in pq.read_table(run_dir / entry.name, columns=["key", "stage", "reason", "detail"]).to_pylist()]
    return classify_dedup_removals(rows, truth)


def classify_dedup_removals(rejections: list[dict[str, Any]], truth: list[dict[str, Any]]) -> dict[str, int]:
    """How many near_duplicate removals were matched (detail: "SURVIVOR (cos ...)") to their own planted
    pair, how many to another scene of the same colour and shape, how many to anything else."""
    rows = {row["key"]: row for row in truth}
    counts = Counter({"removed": 0, "true_pair": 0, "same_concept": 0, "other": 0})
    for row in rejections:
        if row["stage"] != "semantic_dedup" or row["reason"] != "near_duplicate" or row["key"] not in rows:
            continue
        mine, survivor = rows[row["key"]], rows.get(row["detail"].split()[0])
        counts["removed"] += 1
        if survivor is None:
            counts["other"] += 1
        elif survivor["key"] == mine.get("duplicate_of") or mine["key"] == survivor.get("duplicate_of") or (
                mine.get("duplicate_of") is not None and mine.get("duplicate_of") == survivor.get("duplicate_of")):
            counts["true_pair"] += 1
        elif (mine["colour"], mine["shape"]) == (survivor["colour"], survivor["shape"]):
            counts["same_concept"] += 1
        else:
            counts["other"] += 1
    return dict(counts)


def summarize(values: list[float]) -> tuple[float, float]:
    """(mean, spread): spread is max - min over seeds, the honest "more than the seed spread" bar."""
    return statistics.fmean(values), (max(values) - min(values)) if len(values) > 1 else 0.0


def write_results(out: Path, results: dict[str, Any]) -> None:
    atomic_write_bytes(str(out / "results.json"), (json.dumps(results, indent=2) + "\n").encode())
    atomic_write_bytes(str(out / "index.html"), _page(results).encode())


def _filter_cell(entry: dict[str, Any]) -> str:
    """"P / R (removed of reached)"; "-" where none of the type reached the stage."""
    reached = entry.get("reached", entry.get("of", 0))
    if not reached:
        return "-"
    return f"P {entry['precision']:.2f} / R {entry['recall']:.2f} ({entry['removed']} of {reached})"


def _plot(results: dict[str, Any], metric: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipelines.report.page import figure_uri

    names = list(results["recipes"])
    fig, ax = plt.subplots(figsize=(5.6, 2.8))
    for i, name in enumerate(names):
        values = results["recipes"][name]["metrics"].get(metric, [])
        if values:
            ax.scatter([i] * len(values), values, color="#3b82c4", s=18, zorder=3)
            ax.hlines(statistics.fmean(values), i - 0.25, i + 0.25, color="black", linewidth=1.5)
    ax.set_xticks(range(len(names)), names, fontsize=8, rotation=20)
    ax.set_title(f"{metric} ({'lower' if metric in LOWER_IS_BETTER else 'higher'} is better; dots: seeds)",
                 fontsize=9)
    ax.tick_params(labelsize=8)
    return figure_uri(fig)


def _page(results: dict[str, Any]) -> str:
    page = Page("vlcurate mini-DataComp")
    rows = []
    for name, recipe in results["recipes"].items():
        cells = [name, f"{recipe['samples_kept']:,}"]
        for metric in METRICS:
            values = recipe["metrics"].get(metric, [])
            mean, spread = summarize(values) if values else (float("nan"), 0.0)
            cells.append(f"{mean:.4f} ± {spread / 2:.4f}" if values else "")
        rows.append(cells)
    plots = "".join(f'<img src="{_plot(results, m)}" alt="{esc(m)}">' for m in METRICS)
    page.add("recipes", "Recipes (mean ± half the seed range)",
             table(["recipe", "kept", *METRICS], rows, numeric={1, 2, 3, 4}) + f'<div class="plots">{plots}</div>')
    noise_types = sorted({n for stage in results["filters"].values() for n in stage})
    filter_rows = [[stage] + [_filter_cell(v[n]) for n in noise_types] for stage, v in results["filters"].items()]
    page.add("filters", "What each filter removed, by injected noise type (full recipe, stages in order; "
             "recall of what reached the stage)", table(["stage", *noise_types], filter_rows))
    if results.get("dedup_pairs", {}).get("removed"):
        pairs = results["dedup_pairs"]
        page.add("dedup", "Semantic dedup: what its removals were matched to",
                 table(["removed", "its own planted copy/original", "another scene, same colour + shape", "other"],
                       [[str(pairs["removed"]), str(pairs["true_pair"]), str(pairs["same_concept"]),
                         str(pairs["other"])]], numeric={0, 1, 2, 3}))
    if results.get("filter_clip"):
        page.add("filter_clip", "The filtering CLIP", f"<pre>{esc(json.dumps(results['filter_clip'], indent=2))}</pre>")
    page.add("setup", "Setup", f"<pre>{esc(json.dumps(results.get('setup', {}), indent=2))}</pre>")
    return page.render(results.get("summary", ""))
