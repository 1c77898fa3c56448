"""MetaCLIP balancing: cap each entry's share of the pool at about t samples.

entry_prob = t / max(count, t): entries matched by at most t samples keep all of them (the tail),
head entries keep about t. A sample is kept iff one of its matched entries passes u < entry_prob,
with u a pure function of (sample key, entry id, seed), so runners and bundle order do not matter.
"""

from __future__ import annotations

from filters.keyed_random import key_uniform


def entry_prob(count: int, t: int) -> float:
    return t / max(count, t)


def balanced_keep(key: str, entry_ids: list[int], counts: dict[int, int], t: int, seed: int) -> bool:
    return any(key_uniform(key, seed, f"metaclip-entry-{e}") < entry_prob(counts[e], t) for e in entry_ids)


def count_summary(before: dict[int, int], after: dict[int, int], entries: list[str], t: int, top: int = 10) -> dict:
    """Head and tail of the entry-count distribution before and after balancing (for the manifest)."""
    def head(counts: dict[int, int]) -> list[list]:
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
        return [[entries[e], n] for e, n in ranked]

    return {
        "t": t,
        "entries": len(entries),
        "entries_matched": len(before),
        "entries_over_t_before": sum(1 for n in before.values() if n > t),
        "entries_over_t_after": sum(1 for n in after.values() if n > t),
        "entries_matched_once": sum(1 for n in before.values() if n == 1),
        "matches_before": sum(before.values()),
        "matches_after": sum(after.values()),
        "head_before": head(before),
        "head_after": head(after),
    }
