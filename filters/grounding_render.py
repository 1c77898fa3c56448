"""Grounded captions as text: Kosmos-2 location tokens and PaliGemma detection strings.

**Kosmos-2** (transformers' Kosmos2Processor is the reference, checked in tests): the caption with
each rendered phrase wrapped as `<phrase>text</phrase>` and followed by
`<object><patch_index_XXXX><patch_index_YYYY></object>`, several boxes of one phrase joined by
`</delimiter_of_multi_objects/>`, prefixed by `<grounding>`. A box maps to the patches of its
upper-left and lower-right corners on a 32x32 grid: ul = floor(x1 * 32), lr = ceil(x2 * 32 - 1)
(transformers' `coordinate_to_patch_index`). That formula puts a box starting at x1 = 1.0 (or
y1 = 1.0) outside the grid, on patch 32; here every patch coordinate is clamped to [0, 31], the one
place we differ from transformers. Phrases overlap (a referring expression holds its chunk): the
longest non-overlapping ones are rendered, except expressions that would hide another grounded chunk. Written as emitted by the model, without
the spaces the processor puts around special tokens (its tokenizer drops them).

**PaliGemma** (big_vision's detection format, as documented on ai.google.dev for `detect`): per
box four tokens `<locYYYY>`, y before x: y1 x1 y2 x2, each coordinate binned as floor(c * 1024)
clamped to [0, 1023], then a space and the label; entries joined with ` ; `. `parse_paligemma`
reads them back (a bin decodes to its lower edge, c = bin / 1024: within one bin of the original).
"""

from __future__ import annotations

import math
import re

from filters.grounding_phrases import Phrase

GRID = 32
LOC_BINS = 1024
_LOC_ENTRY = re.compile(r"((?:<loc\d{4}>){4})\s*([^;<>]*?)\s*(?:;|$)")


def patch_indices(box, grid: int = GRID) -> tuple[int, int]:
    """(upper-left, lower-right) patch index of a normalized box on a grid x grid board, clamped."""
    x1, y1, x2, y2 = box[:4]
    clamp = lambda v: min(grid - 1, max(0, v))  # noqa: E731
    ul_x, ul_y = clamp(math.floor(x1 * grid)), clamp(math.floor(y1 * grid))
    lr_x, lr_y = clamp(math.ceil(x2 * grid - 1)), clamp(math.ceil(y2 * grid - 1))
    return ul_y * grid + ul_x, lr_y * grid + lr_x


def _cuts(expression: Phrase, chunk: Phrase) -> bool:
    """The expression overlaps the chunk without holding all of it (it would cut it in two)."""
    overlaps = expression.start < chunk.end and chunk.start < expression.end
    return overlaps and not (expression.start <= chunk.start and chunk.end <= expression.end)


def rendered_phrases(phrases: list[Phrase]) -> list[Phrase]:
    """Non-overlapping grounded phrases, the longest first claimed, returned in caption order. A
    referring expression holding another grounded chunk besides its own ("a blue box on a green
    mat"), or cutting one in two, is not rendered: the chunks are, so no grounded object loses its
    boxes to nesting."""
    grounded = [p for p in phrases if p.boxes]
    chunks = [p for p in grounded if p.kind == "chunk"]
    eligible = [p for p in grounded if p.kind == "chunk"
                or (sum(1 for c in chunks if p.start <= c.start and c.end <= p.end) <= 1
                    and not any(_cuts(p, c) for c in chunks))]
    chosen: list[Phrase] = []
    for phrase in sorted(eligible, key=lambda p: (-(p.end - p.start), p.start)):
        if all(phrase.end <= c.start or phrase.start >= c.end for c in chosen):
            chosen.append(phrase)
    return sorted(chosen, key=lambda p: p.start)


def kosmos2(caption: str, phrases: list[Phrase], grid: int = GRID) -> str:
    out, position = ["<grounding>"], 0
    for phrase in rendered_phrases(phrases):
        objects = "</delimiter_of_multi_objects/>".join(
            "<patch_index_{:04d}><patch_index_{:04d}>".format(*patch_indices(box, grid)) for box in phrase.boxes)
        out += [caption[position : phrase.start], f"<phrase>{caption[phrase.start:phrase.end]}</phrase>",
                f"<object>{objects}</object>"]
        position = phrase.end
    out.append(caption[position:])
    return "".join(out)


def _bin(value: float) -> int:
    return min(LOC_BINS - 1, max(0, math.floor(value * LOC_BINS)))


def paligemma(phrases: list[Phrase]) -> str:
    entries = []
    for phrase in rendered_phrases(phrases):
        label = " ".join(phrase.text.split()).replace(";", ",")  # ";" separates entries
        for x1, y1, x2, y2, *_ in phrase.boxes:
            locs = "".join(f"<loc{_bin(v):04d}>" for v in (y1, x1, y2, x2))
            entries.append(f"{locs} {label}")
    return " ; ".join(entries)


def parse_paligemma(text: str) -> list[tuple[str, list[float]]]:
    """(label, [x1, y1, x2, y2]) per entry of a PaliGemma detection string."""
    found = []
    for locs, label in _LOC_ENTRY.findall(text):
        y1, x1, y2, x2 = (int(v) / LOC_BINS for v in re.findall(r"\d{4}", locs))
        found.append((label, [x1, y1, x2, y2]))
    return found
