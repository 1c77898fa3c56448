"""Resource limits on a record's own fields, checked when it is read and before any costly rule.

Web metadata is hostile by default: JSON nested thousands of levels deep, lone UTF-16 surrogates
that no UTF-8 encoder accepts, megabyte captions. Each is a reason on that one record, found with
iterative walks (no recursion to exhaust) before anything parses, encodes or tags the record.
"""

from __future__ import annotations

from typing import Any

DEFAULT_MAX_CAPTION_CHARS = 65_536  # spaCy refuses texts over 1,000,000; real alt text is far shorter
DEFAULT_MAX_JSON_DEPTH = 32


def metadata_problem(value: Any, max_depth: int = DEFAULT_MAX_JSON_DEPTH) -> tuple[str, str] | None:
    """(reason, detail) for metadata nested deeper than max_depth or holding a string that is not
    valid Unicode (a lone surrogate from a "\\ud800" escape); None when it is fine."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            if depth > max_depth:
                return "metadata_too_deep", f"nested more than {max_depth} levels"
            for k, v in item.items():
                if not _encodable(k):
                    return "metadata_invalid_unicode", f"key {k!r} is not valid Unicode (lone surrogate)"
                stack.append((v, depth + 1))
        elif isinstance(item, list):
            if depth > max_depth:
                return "metadata_too_deep", f"nested more than {max_depth} levels"
            stack.extend((v, depth + 1) for v in item)
        elif isinstance(item, str) and not _encodable(item):
            return "metadata_invalid_unicode", f"{item[:40]!r}... is not valid Unicode (lone surrogate)"
    return None


def caption_problem(caption: str | None, max_chars: int = DEFAULT_MAX_CAPTION_CHARS) -> tuple[str, str] | None:
    if caption is None:
        return None
    if len(caption) > max_chars:
        return "caption_too_long", f"{len(caption):,} characters > {max_chars:,}"
    if not _encodable(caption):
        return "caption_invalid_unicode", "the caption is not valid Unicode (lone surrogate)"
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
