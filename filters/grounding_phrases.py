"""GRIT's phrases (Kosmos-2, Peng et al. 2023, §2): what in a caption a detector is asked to find,
and how grounded noun chunks grow into referring expressions.

1. Noun chunks of the caption (spaCy's parser), minus pronouns, chunks whose head noun is abstract
   (filters/wordnet_nouns.py) and heads on a replaceable stop list (words that name no object in
   the picture: "image", "photo", "background", ...). Character offsets index the caption as given.
2. Referring expressions: a grounded chunk is expanded to the dependency subtree of its head,
   without following conjunctions ("a dog on the grass and a cat" -> "a dog on the grass"), as the
   contiguous run of that subtree around the chunk; expressions inside a longer one are dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

CHUNK, REF_EXP = "chunk", "ref_exp"
# Heads that parse as nouns but name no object a detector could box in the picture.
DEFAULT_STOP_NOUNS = ("image", "images", "picture", "pictures", "photo", "photos", "photograph", "view", "background",
                      "foreground", "side", "front", "back", "top", "bottom", "left", "right", "middle", "center",
                      "centre", "part", "lot", "kind", "type", "sort", "stock", "illustration", "close-up", "closeup",
                      "shot", "scene", "frame", "copy", "space", "vector", "thing", "things", "way", "one", "ones")
# GRIT: conjunctions end an expression. Punctuation is followed: spaCy splits "well-lit" and `"red"`
# into tokens whose hyphen and quotes are `punct`, and cutting there gave "a dog in a well".
_NOT_FOLLOWED = frozenset({"cc", "conj", "preconj"})


@dataclass
class Phrase:
    text: str
    start: int  # character offsets into the caption
    end: int
    kind: str  # chunk | ref_exp
    head: str  # the head noun's lemma
    boxes: list[list[float]] = field(default_factory=list)  # [x1, y1, x2, y2, score], normalized to [0, 1]

    def as_json(self) -> dict:
        return {"phrase": self.text, "start": self.start, "end": self.end, "kind": self.kind,
                "boxes": [[round(v, 4) for v in box] for box in self.boxes]}


def noun_chunks(doc, is_abstract: Callable[[str], bool], stop_nouns: frozenset[str]) -> list[tuple[Phrase, object]]:
    """(Phrase, spaCy span) for each chunk worth asking a detector about, in caption order."""
    kept = []
    for span in doc.noun_chunks:
        head = span.root
        lemma = (head.lemma_ or head.text).lower()
        if head.pos_ == "PRON" or lemma in stop_nouns or head.text.lower() in stop_nouns or is_abstract(lemma):
            continue
        kept.append((Phrase(span.text, span.start_char, span.end_char, CHUNK, lemma), span))
    return kept


def referring_expression(span) -> tuple[int, int]:
    """(start_char, end_char) of the chunk's head subtree, conjunctions not followed, kept contiguous
    around the chunk (a subtree with a gap, where a conjunct was cut, ends at the gap)."""
    doc, head = span.doc, span.root
    members, stack = {head.i}, [head]
    while stack:
        for child in stack.pop().children:
            if child.dep_ not in _NOT_FOLLOWED and child.i not in members:
                members.add(child.i)
                stack.append(child)
    members.update(range(span.start, span.end))
    first, last = span.start, span.end - 1
    while first - 1 in members:
        first -= 1
    while last + 1 in members:
        last += 1
    while last > first and doc[last].is_punct:  # a trailing comma or full stop is not part of it
        last -= 1
    return doc[first].idx, doc[last].idx + len(doc[last].text)


def referring_expressions(grounded: list[tuple[Phrase, object]], caption: str) -> list[Phrase]:
    """The expansions of grounded chunks that are longer than their chunk, each carrying its chunk's
    boxes, minus those contained in a longer kept one."""
    found: dict[tuple[int, int], Phrase] = {}
    for chunk, span in grounded:
        start, end = referring_expression(span)
        if (start, end) != (chunk.start, chunk.end) and (start, end) not in found:
            found[(start, end)] = Phrase(caption[start:end], start, end, REF_EXP, chunk.head, list(chunk.boxes))
    spans = sorted(found, key=lambda s: (s[0], -s[1]))
    return [found[s] for s in spans
            if not any(o != s and o[0] <= s[0] and s[1] <= o[1] for o in spans)]
