"""MetaCLIP-style metadata: the entries captions are matched against, from WordNet, word
frequencies and user files, as one de-duplicated JSON list of strings (MetaCLIP's published format).

WordNet is read straight from the database files (wndb(5WN): `data.noun`, `data.verb`, `data.adj`,
`data.adv`), not through nltk, whose reader wants its own data directories and a `lexnames` file
Debian's `wordnet-base` does not ship.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

WORDNET_DIR = "/usr/share/wordnet"
WORDNET_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")
INSTALL_HINT = ("install WordNet 3.0's database (Debian/Ubuntu: apt-get install wordnet-base, which puts "
                "data.noun etc. in /usr/share/wordnet), or point --wordnet-dir at a directory holding "
                "data.noun, data.verb, data.adj, data.adv; or pass --no-wordnet to build from the other sources")
_ADJ_MARKER = re.compile(r"\((a|p|ip)\)$")  # syntactic markers on adjectives: galore(ip), proud(p)


class MetadataSourceError(FileNotFoundError):
    """A source cannot be read; the message says how to supply it."""


def wordnet_lemmas(directory: str | Path = WORDNET_DIR) -> Iterator[str]:
    """Every synset's lemma names, in file order, underscores turned to spaces (duplicates kept)."""
    directory = Path(directory)
    missing = [f for f in WORDNET_FILES if not (directory / f).is_file()]
    if missing:
        raise MetadataSourceError(f"WordNet files missing in {directory}: {', '.join(missing)}; {INSTALL_HINT}")
    for name in WORDNET_FILES:
        with open(directory / name, encoding="utf-8", errors="strict") as f:
            for line in f:
                if line.startswith("  "):  # the licence header
                    continue
                yield from _synset_lemmas(line)


def _synset_lemmas(line: str) -> Iterator[str]:
    # synset_offset lex_filenum ss_type w_cnt(hex) word lex_id [word lex_id ...] p_cnt ...
    fields = line.split(" ")
    count = int(fields[3], 16)
    for i in range(count):
        word = _ADJ_MARKER.sub("", fields[4 + 2 * i])
        yield word.replace("_", " ")


def frequent_unigrams(min_zipf: float, language: str = "en", limit: int = 1_000_000) -> Iterator[str]:
    """wordfreq's words at or above a Zipf frequency (3.0 = once per million words), most frequent first."""
    from wordfreq import top_n_list, zipf_frequency

    for word in top_n_list(language, limit):
        if zipf_frequency(word, language) < min_zipf:
            return
        yield word


def user_entries(path: str | Path) -> Iterator[str]:
    """A user file: a JSON list of strings, or plain text with one entry per line."""
    path = Path(path)
    if not path.is_file():
        raise MetadataSourceError(f"metadata source {path} does not exist")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        data = json.loads(text)
        if not isinstance(data, list) or not all(isinstance(x, str) for x in data):
            raise MetadataSourceError(f"{path}: a .json source must be a list of strings")
        yield from data
    else:
        yield from (line.strip() for line in text.splitlines() if line.strip())


def merge_sources(sources: Iterable[tuple[str, Iterable[str]]]) -> tuple[list[str], dict[str, dict[str, int]]]:
    """Stable de-duplication across sources in order; per source: entries read and entries it added."""
    seen: dict[str, None] = {}
    counts: dict[str, dict[str, int]] = {}
    for name, entries in sources:
        read = added = 0
        for entry in entries:
            read += 1
            if entry and entry not in seen:
                seen[entry] = None
                added += 1
        counts[name] = {"read": read, "added": added}
    return list(seen), counts
