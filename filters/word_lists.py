"""The word lists of the OBELICS text rules, from real sources.

- stop words: OBELICS' own 301-word English list (shipped as a file with its source in the header;
  spaCy's 326-word list shares only 186 of them and moved 8 of 499 real paragraphs across the
  node rule's 0.3);
- common words: the `n` most frequent English words of `wordfreq` (OBELICS' own list was never
  published: its code points at a Google Drive file, see obelics/callers/filter_web_documents.py);
- flagged words: a file, one word per line (the shipped one is OBELICS' list, with its source in
  the header), replaceable from the recipe.

Lists load once per process (they are read by every worker for every paragraph).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import manifests

DEFAULT_FLAGGED_WORDS = Path(manifests.__file__).parent / "wordlists" / "flagged_words_en.txt"
DEFAULT_STOP_WORDS = Path(manifests.__file__).parent / "wordlists" / "stop_words_en.txt"


@lru_cache(maxsize=4)
def stop_words(language: str = "en") -> frozenset[str]:
    if language != "en":
        raise ValueError(f"stop words are shipped for en only, not {language!r}")
    return _word_file(DEFAULT_STOP_WORDS)


@lru_cache(maxsize=8)
def common_words(language: str = "en", n: int = 100_000) -> frozenset[str]:
    from wordfreq import top_n_list

    return frozenset(top_n_list(language, n))


@lru_cache(maxsize=8)
def flagged_words(path: str | None = None) -> frozenset[str]:
    """Words of a flagged-word file (default: the shipped OBELICS list). A missing file is an error."""
    file = Path(path) if path else DEFAULT_FLAGGED_WORDS
    if not file.is_file():
        raise FileNotFoundError(f"flagged_words_file {file} does not exist (one word per line)")
    return _word_file(file)


def _word_file(file: Path) -> frozenset[str]:
    words = set()
    for line in file.read_text(encoding="utf-8").splitlines():
        word = line.strip().lower()
        if word and not word.startswith("#"):
            words.add(word)
    return frozenset(words)
