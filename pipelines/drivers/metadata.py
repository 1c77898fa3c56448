"""`vlcurate metadata build`: WordNet lemmas + frequent unigrams + user files -> metadata JSON.

Writes OUT (a JSON list of strings, MetaCLIP's format; compressed when its name ends in .gz, .bz2 or
.xz, as the metaclip stage reads it) and OUT's stem with `.counts.json` beside it: for each source, how
many entries it read and how many it added after de-duplication.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
from pathlib import Path

from filters.metadata_sources import (WORDNET_DIR, frequent_unigrams, merge_sources, user_entries,
                                      wordnet_lemmas)
from manifests.storage import atomic_write_bytes


COMPRESSORS = {".gz": lambda data: gzip.compress(data, mtime=0), ".bz2": bz2.compress, ".xz": lzma.compress}


def counts_path(out: str) -> str:
    """metadata.json -> metadata.counts.json; metadata.json.gz -> metadata.counts.json too."""
    path = Path(out)
    if path.suffix in COMPRESSORS:
        path = path.with_suffix("")
    return str(path.with_suffix("")) + ".counts.json"


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
    if not entries:  # the metaclip stage would find no entry in any caption and keep nothing
        raise ValueError("the sources gave no entries (" + ", ".join(f"{name}: {c['read']} read" for name, c in
                         counts.items()) + "); nothing written: lower --min-zipf or add sources")
    summary = {"entries": len(entries), "sources": counts, "output": out}
    data = json.dumps(entries, ensure_ascii=False).encode("utf-8")
    atomic_write_bytes(out, COMPRESSORS.get(Path(out).suffix, lambda raw: raw)(data))
    atomic_write_bytes(counts_path(out), json.dumps(summary, indent=2).encode("utf-8"))
    return summary
