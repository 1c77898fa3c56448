"""Is a noun abstract? GRIT's test, on WordNet's own database files.

Kosmos-2's GRIT drops noun chunks whose head cannot be pictured (`idea`, `freedom`, `time`). Here a
head noun is abstract when WordNet knows it and every one of its noun senses lies under
`abstraction.n.06` while none lies under `physical_entity.n.01` (hypernym and instance-hypernym
pointers, followed to the root). A noun WordNet does not know (a name, a rare word) is not abstract:
the detector decides whether it is there.

Read straight from `index.noun` and `data.noun` (wndb(5WN)), the files `vlcurate metadata build`
reads too (Debian: apt-get install wordnet-base), not through nltk (see metadata_sources.py).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from filters.metadata_sources import INSTALL_HINT, WORDNET_DIR, MetadataSourceError

ABSTRACTION = "00002137"  # abstraction.n.06 in WordNet 3.0's data.noun
PHYSICAL_ENTITY = "00001930"  # physical_entity.n.01
_HYPERNYMS = ("@", "@i")


class WordNetNouns:
    def __init__(self, directory: str | Path = WORDNET_DIR):
        directory = Path(directory)
        missing = [f for f in ("index.noun", "data.noun") if not (directory / f).is_file()]
        if missing:
            raise MetadataSourceError(f"WordNet files missing in {directory}: {', '.join(missing)}; {INSTALL_HINT}")
        self.directory = directory
        self.senses = _index(directory / "index.noun")
        self.parents = _hypernyms(directory / "data.noun")
        self._under: dict[str, frozenset[str]] = {}

    def ancestors(self, offset: str) -> frozenset[str]:
        """Every synset above `offset` (itself included), memoized; iterative, cycles ignored."""
        if offset in self._under:
            return self._under[offset]
        seen, stack = {offset}, [offset]
        while stack:
            for parent in self.parents.get(stack.pop(), ()):
                if parent not in seen:
                    seen.add(parent)
                    stack.append(parent)
        self._under[offset] = frozenset(seen)
        return self._under[offset]

    def is_abstract(self, lemma: str) -> bool:
        senses = self.senses.get(lemma.strip().lower().replace(" ", "_"), ())
        if not senses:
            return False
        roots = [self.ancestors(s) for s in senses]
        return all(ABSTRACTION in r for r in roots) and not any(PHYSICAL_ENTITY in r for r in roots)


def _index(path: Path) -> dict[str, tuple[str, ...]]:
    """lemma -> its noun synset offsets (index.noun: lemma pos synset_cnt p_cnt [ptr]... sense_cnt
    tagsense_cnt offset...)."""
    senses = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("  "):  # the licence header
                continue
            fields = line.split()
            count, pointers = int(fields[2]), int(fields[3])
            senses[fields[0]] = tuple(fields[4 + pointers + 2 : 4 + pointers + 2 + count])
    return senses


def _hypernyms(path: Path) -> dict[str, tuple[str, ...]]:
    """offset -> its hypernym offsets (data.noun: offset lex_filenum ss_type w_cnt(hex) [word lex_id]...
    p_cnt [symbol offset pos source/target]... | gloss)."""
    parents = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("  "):
                continue
            fields = line.split(" | ", 1)[0].split()
            words = int(fields[3], 16)
            at = 4 + 2 * words
            pointers = int(fields[at])
            found = []
            for i in range(pointers):
                symbol, target, pos = fields[at + 1 + 4 * i : at + 4 + 4 * i]
                if symbol in _HYPERNYMS and pos == "n":
                    found.append(target)
            parents[fields[0]] = tuple(found)
    return parents


@lru_cache(maxsize=2)
def wordnet_nouns(directory: str = WORDNET_DIR) -> WordNetNouns:
    """One loaded WordNet per process and directory (82k synsets: about a second to read)."""
    return WordNetNouns(directory)
