"""Caption cleanup applied before any caption rule: web alt text carries markup and entities."""

from __future__ import annotations

import html
import re

# A tag is "<" directly followed by a letter, "/" or "!" (so "a < b" or "<3" survive as text).
# Linear time: a match cannot extend past the next "<" or ">". Comments are removed by _strip_comments:
# a lazy "<!--.*?-->" rescans to the end from every unclosed "<!--" (quadratic: 21 s on 80 KB).
_TAG = re.compile(r"<[/!]?[A-Za-z][^<>]*>")
# Zero-width and other format characters that make captions look alike but compare unequal.
_INVISIBLE = re.compile("[\u200b-\u200f\u2028\u2029\u202a-\u202e\u2060-\u2064\ufeff]")
_SPACE = re.compile(r"\s+")


def clean_caption(text: str) -> str:
    """Strip HTML tags and entities, drop invisible characters, collapse whitespace.

    Entities are unescaped between two tag passes because alt text is often escaped twice
    ("&lt;b&gt;sale&lt;/b&gt;" is markup once unescaped, "&amp;amp;" is an ampersand).
    """
    text = _TAG.sub(" ", _strip_comments(text))
    for _ in range(2):
        unescaped = html.unescape(text)
        if unescaped == text:
            break
        text = _TAG.sub(" ", _strip_comments(unescaped))
    text = _INVISIBLE.sub("", text)
    return _SPACE.sub(" ", text).strip()


def _strip_comments(text: str) -> str:
    """Drop <!-- ... --> comments in one left-to-right pass; an unclosed one runs to the end (as in
    browsers)."""
    if "<!--" not in text:
        return text
    out, position = [], 0
    while (start := text.find("<!--", position)) != -1:
        out.append(text[position:start])
        end = text.find("-->", start + 4)
        if end == -1:
            position = len(text)
            break
        out.append(" ")
        position = end + 3
    out.append(text[position:])
    return "".join(out)
