"""`vlcurate metadata build`: WordNet lemmas + frequent unigrams + user files -> metadata JSON.

Writes OUT (a JSON list of strings, MetaCLIP's format) and OUT with `.counts.json` beside it: for
each source, how many entries it read and how many it added after de-duplication.
"""

from __future__ import annotations

import json
from pathlib import Path

from filters.metadata_sources import (WORDNET_DIR, frequent_unigrams, merge_sources, user_entries,
                                      wordnet_lemmas)
from manifests.storage import atomic_write_bytes


def counts_path(out: str) -> str:
    return str(Path(out).with_suffix("")) + ".counts.json"


def build_metadata(out: str, wordnet_dir: str | None = WORDNET_DIR, min_zipf: float | None = 3.0,
                   extra: list[str] = ()) -> dict:
    sources = []
    if wordnet_dir is not None:
        sources.append(("wordnet", list(wordnet_lemmas(wordnet_dir))))  # read fully: fail before writing
    if min_zipf is not None:
        sources.append((f"wordfreq_en_zipf>={min_zipf}", frequent_unigrams(min_zipf)))
    for path in extra:
        sources.append((f"file:{path}", list(user_entries(path))))
    if not sources:
        raise ValueError("no source selected: keep WordNet, set --min-zipf, or give --extra files")
    entries, counts = merge_sources(sources)
    summary = {"entries": len(entries), "sources": counts, "output": out}
    atomic_write_bytes(out, json.dumps(entries, ensure_ascii=False).encode("utf-8"))
    atomic_write_bytes(counts_path(out), json.dumps(summary, indent=2).encode("utf-8"))
    return summary
