"""Benchmark 2 (issue 2): how many of the 10,000 real alt-text captions each DataComp text rule keeps.

Each rule alone on the raw captions, then all three together (DataComp's basic text rules), and
the same after vlcurate's HTML cleanup, for reference. Also times the language rule against a bare
fastText loop in the same process.

    .venv/bin/python tests/bench/datacomp_text_rules.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from filters.caption_rules import BoilerplateMatcher, count_words  # noqa: E402
from filters.language import LanguageIdentifier  # noqa: E402
from filters.model_files import default_lid_model_path  # noqa: E402
from filters.text_cleanup import clean_caption  # noqa: E402
from tests.bench.common import real_captions_or_skip  # noqa: E402


def main() -> None:
    captions = [c or "" for _url, c in real_captions_or_skip()]
    n = len(captions)
    lid = LanguageIdentifier(default_lid_model_path())
    started = time.perf_counter()
    labels = [g.label for g in lid.predict(captions)]
    lid_s = time.perf_counter() - started
    started = time.perf_counter()
    bare = [lid._model.predict(c.replace("\n", " "), k=1)[0][0] for c in captions]
    bare_s = time.perf_counter() - started
    assert [b.removeprefix("__label__") for b in bare] == labels

    rules = {
        "words > 2 (whitespace split)": [count_words(c) > 2 for c in captions],
        "chars > 5": [len(c) > 5 for c in captions],
        "fastText lid.176 top-1 == en": [lab == "en" for lab in labels],
    }
    rules["all three (DataComp basic, text part)"] = [all(v) for v in zip(*rules.values())]
    cleaned = [clean_caption(c) for c in captions]
    clean_labels = [g.label for g in lid.predict(cleaned)]
    rules["all three after HTML cleanup"] = [count_words(c) > 2 and len(c) > 5 and lab == "en"
                                             for c, lab in zip(cleaned, clean_labels)]
    boiler = BoilerplateMatcher()
    rules["... and not boilerplate"] = [k and boiler.match(c) is None
                                        for k, c in zip(rules["all three after HTML cleanup"], cleaned)]
    changed = sum(a != b for a, b in zip(captions, cleaned))

    print(f"| rule | kept | of {n:,} |")
    print("|---|---:|---:|")
    for name, kept in rules.items():
        print(f"| {name} | {sum(kept):,} | {sum(kept) / n:.1%} |")
    print(f"\nHTML cleanup changed {changed:,} captions.")
    print(f"language ID: batched {n / lid_s:,.0f} captions/s vs bare per-caption loop {n / bare_s:,.0f}/s "
          f"(ratio {bare_s / lid_s:.2f}x)")


if __name__ == "__main__":
    main()
