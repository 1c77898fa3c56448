"""Caption cleanup applied before any caption rule: web alt text carries mojibake, markup and entities."""

from __future__ import annotations

import html
import re

from ftfy import TextFixerConfig, fix_text

# ftfy's repairs (mojibake, C1 controls, terminal escapes, lone surrogates, control characters)
# without its restyling: curly quotes, full-width forms and ligatures are text someone wrote, not
# damage, and uncurling every quote would count most captions as "repaired". HTML entities and
# whitespace (line breaks included) are clean_caption's job, so `clean_html: false` keeps them. NFC
# (ftfy's default) stays: same text, one spelling, so exact matching (MetaCLIP entries, caption
# dedup) sees "é" one way.
_REPAIRS_ONLY = TextFixerConfig(unescape_html=False, uncurl_quotes=False, fix_character_width=False,
                                fix_latin_ligatures=False, fix_line_breaks=False, explain=False)

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
    text = _TAG.sub(" ", _strip_raw_text(_strip_comments(text)))
    for _ in range(2):
        unescaped = html.unescape(text)
        if unescaped == text:
            break
        text = _TAG.sub(" ", _strip_raw_text(_strip_comments(unescaped)))
    text = _INVISIBLE.sub("", text)
    return _SPACE.sub(" ", text).strip()


def repair_text(text: str) -> str:
    """The text with broken Unicode repaired by ftfy ("cafÃ©" -> "café"), otherwise unchanged."""
    if text.isascii() and text.isprintable():
        return text  # nothing ftfy repairs is printable ASCII; skips ~18 us per caption
    return fix_text(text, _REPAIRS_ONLY)


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


_RAW_TEXT_START = re.compile(r"<(script|style)\b", re.IGNORECASE)
_RAW_TEXT_END = {name: re.compile(f"</{name}", re.IGNORECASE) for name in ("script", "style")}


def _strip_raw_text(text: str) -> str:
    """Drop <script> and <style> elements with their contents (code, not caption text), in one pass;
    an unclosed one runs to the end, as in browsers. Tag stripping alone kept `alert(1)` as words."""
    if "<" not in text:
        return text
    out, position = [], 0
    while (found := _RAW_TEXT_START.search(text, position)) is not None:
        out.append(text[position:found.start()])
        end_tag = _RAW_TEXT_END[found.group(1).lower()].search(text, found.end())
        if end_tag is None:
            position = len(text)
            break
        close = text.find(">", end_tag.start())
        position = len(text) if close == -1 else close + 1
        out.append(" ")
    out.append(text[position:])
    return "".join(out)
