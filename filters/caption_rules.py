"""Caption length and boilerplate rules (DataComp's text rules, plus common alt-text junk)."""

from __future__ import annotations

import re
from collections.abc import Iterable

# Alt text that says nothing about the image: file names, camera defaults, UI strings.
DEFAULT_BOILERPLATE_PATTERNS: tuple[str, ...] = (
    r"^\S+\.(jpe?g|png|gif|webp|bmp|tiff?)$",  # a bare file name
    r"^(img|dsc|dscn|dcim|pxl|screenshot)[\s_-]?\d+",  # camera / screenshot defaults
    r"^(image|photo|picture|img|thumbnail|untitled|placeholder|logo|icon|banner)s?( \d+)?$",
    r"click (here )?to (enlarge|zoom|view)",
    r"^(stock )?(photo|image|picture) (of|for|from)? ?(stock|sale)",
    r"no (image|photo) available",
)


def count_words(caption: str) -> int:
    """Words as DataComp counts them: a whitespace split."""
    return len(caption.split())


def has_enough_words(caption: str, min_words: int) -> bool:
    return count_words(caption) >= min_words


def has_enough_chars(caption: str, min_chars: int) -> bool:
    return len(caption) >= min_chars


class BoilerplateMatcher:
    """Case-insensitive search for any of a list of regular expressions."""

    def __init__(self, patterns: Iterable[str] = DEFAULT_BOILERPLATE_PATTERNS):
        self.patterns = tuple(patterns)
        self._regex = re.compile("|".join(f"(?:{p})" for p in self.patterns), re.IGNORECASE) if self.patterns else None

    def match(self, caption: str) -> str | None:
        """The matched text, or None when the caption is not boilerplate."""
        if self._regex is None:
            return None
        found = self._regex.search(caption.strip())
        return found.group(0) if found else None
