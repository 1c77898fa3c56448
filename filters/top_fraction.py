"""Keep the global top fraction of a pool by score, exactly, with ties broken by key.

Order every sample by (-score, key): higher scores first, then smaller keys. The top fraction f of
n samples is the first k = ceil(f * n) of that order, so the decision is one comparison against
the k-th element (the cutoff). Finding it at any scale takes two small passes instead of a sort:
1. a histogram of scores over fixed bins (a sparse dict; cosine scores lie in [-1, 1]) locates the
   bin holding the k-th element and how many of the k lie in higher bins;
2. only that bin's (-score, key) pairs are collected and sorted to find the cutoff exactly.
The collected bin is a tiny slice of the pool unless nearly all scores are equal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

BINS = 1 << 16
LOW, HIGH = -1.0, 1.0


def bin_of(score: float) -> int:
    """Bins are numbered from the top: bin 0 holds the highest scores (NaN: the last; stages reject
    non-finite scores before ranking, this only keeps a bug from failing a run)."""
    if score != score:
        return BINS - 1
    position = (HIGH - min(max(score, LOW), HIGH)) / (HIGH - LOW) * BINS
    return min(int(position), BINS - 1)


def keep_count(n: int, fraction: float) -> int:
    return min(n, math.ceil(fraction * n - 1e-9))


@dataclass(frozen=True)
class CutoffPlan:
    total: int  # samples scored
    keep: int  # k
    bin: int  # the bin holding the k-th element (-1 when k == 0)
    needed: int  # how many of that bin's elements are kept (the k-th is the needed-th of the bin)


def plan_cutoff(histogram: dict[int, int], fraction: float) -> CutoffPlan:
    total = sum(histogram.values())
    k = keep_count(total, fraction)
    if k == 0:
        return CutoffPlan(total, 0, -1, 0)
    above = 0
    for b in sorted(histogram):
        if above + histogram[b] >= k:
            return CutoffPlan(total, k, b, k - above)
        above += histogram[b]
    raise AssertionError("histogram holds fewer samples than it counts")


def cutoff_from_band(band: list[tuple[float, str]], plan: CutoffPlan) -> tuple[float, str] | None:
    """The k-th (-score, key) of the whole order, from the elements of the plan's bin."""
    if plan.keep == 0:
        return None
    if len(band) < plan.needed:
        raise AssertionError(f"bin {plan.bin} holds {len(band)} elements, the plan needs {plan.needed}")
    return sorted(band)[plan.needed - 1]


def in_top(score: float, key: str, cutoff: tuple[float, str] | None) -> bool:
    return cutoff is not None and (-score, key) <= cutoff
