"""The report's plots (matplotlib, Agg: no display needed): each score's distribution over every
record that has it, kept and rejected stacked, with the recipe's cutoff drawn and the share it
removed written on the plot."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # before pyplot: workers and CI have no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pipelines.report.page import figure_uri  # noqa: E402
from pipelines.stages.spec import Cutoff  # noqa: E402

KEPT, HERE, LATER = "#3b82c4", "#d9534f", "#b0b0b0"


def _range(values: np.ndarray, cutoffs: list[float]) -> tuple[float, float]:
    """The bulk of the data (0.5-99.5 percentiles: one 10,000-word caption must not squash the rest),
    widened to show the cutoffs."""
    low, high = np.percentile(values, [0.5, 99.5]) if len(values) > 20 else (values.min(), values.max())
    low, high = min([low, *cutoffs]), max([high, *cutoffs])
    if high <= low:
        low, high = low - 0.5, high + 0.5
    return float(low), float(high)


def _outside(values: np.ndarray, cutoff: Cutoff) -> int:
    return int((values < cutoff.value).sum() if cutoff.keep == "above" else (values > cutoff.value).sum())


def score_histogram(name: str, kept: list[float], rejected: list[tuple[str, float]], stage: str | None,
                    cutoffs: list[Cutoff]) -> tuple[str, str]:
    """(PNG data URI, one-line summary). `rejected`: (stage that dropped the record, value);
    `stage`: the stage that computed the score (its rejections are drawn apart from later ones)."""
    here = np.array([v for s, v in rejected if s == stage], dtype=float)
    later = np.array([v for s, v in rejected if s != stage], dtype=float)
    kept_values = np.array(kept, dtype=float)
    everything = np.concatenate([kept_values, here, later])
    low, high = _range(everything, [c.value for c in cutoffs])
    integers = len(everything) and np.all(everything == np.round(everything)) and high - low <= 80
    bins = np.arange(np.floor(low), np.ceil(high) + 2) - 0.5 if integers else np.linspace(low, high, 41)
    fig, ax = plt.subplots(figsize=(5.2, 2.9))
    series = [(kept_values, KEPT, "kept"), (here, HERE, f"rejected by {stage}"), (later, LATER, "rejected elsewhere")]
    shown = [(np.clip(v, low, high), c, label) for v, c, label in series if len(v)]
    ax.hist([v for v, _, _ in shown], bins=bins, stacked=True, color=[c for _, c, _ in shown],
            label=[label for _, _, label in shown])
    total = len(everything)
    lines = []
    for cutoff in cutoffs:
        share = _outside(everything, cutoff) / total if total else 0.0
        side = "below" if cutoff.keep == "above" else "above"
        ax.axvline(cutoff.value, color="black", linestyle="--", linewidth=1.2)
        lines.append(f"{cutoff.setting} = {cutoff.value:g}: {share:.1%} {side}")
    summary = f"{total:,} records measured" + (f"; {'; '.join(lines)}" if lines else "")
    if lines:  # headroom above the tallest bar for the cutoff text, so it covers no bar
        ax.set_ylim(top=ax.get_ylim()[1] * (1.15 + 0.13 * len(lines)))
        ax.text(0.98, 0.95, "\n".join(lines), transform=ax.transAxes, ha="right", va="top", fontsize=8,
                bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "none"})
    ax.set_title(name, fontsize=10)
    ax.set_ylabel("records", fontsize=9)
    ax.tick_params(labelsize=8)
    # Below the axes: inside, the legend covered bars and the cutoff label of some scores.
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=len(shown), frameon=False)
    return figure_uri(fig), summary


def funnel_bars(stages: list[str], kept: list[int], rejected: list[int], kind: str) -> str:
    """Records left after each stage (horizontal bars), rejected part on top."""
    fig, ax = plt.subplots(figsize=(6.4, 0.45 * len(stages) + 0.9))
    y = np.arange(len(stages))[::-1]
    ax.barh(y, kept, color=KEPT, label="kept")
    ax.barh(y, rejected, left=kept, color=HERE, label="rejected here")
    ax.set_yticks(y, stages, fontsize=8)
    ax.set_xlabel(f"{kind} records", fontsize=9)
    ax.tick_params(labelsize=8)
    ax.legend(fontsize=7, frameon=False, loc="lower right")
    return figure_uri(fig)
