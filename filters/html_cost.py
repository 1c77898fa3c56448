"""What an HTML page will cost the HTML5 parser, estimated before it runs.

The HTML5 tree builder "reconstructs the active formatting elements": formatting tags left open
(`<b>`, `<font>`, `<a>`, ...) are cloned again into every new block that gets text. Distinct open tags
(so the three-identical-entries rule never trims them) times paragraphs is quadratic: 3,000 open
`<b id=..>` and 3,000 `<p>` is a 120 KB page that builds 9 million elements and took 4 GB (measured,
lexbor through selectolax); a 400 KB one would need ~35 GB and take the whole run down with it.
Every HTML5 parser (and browser) does this by the specification, so the page is refused before parsing.

The estimate walks the tags once (a regex, linear time): elements created by tags, plus, at each
block boundary, the formatting elements still open. It over-counts where the parser trims the list
(scope markers such as table cells, the identical-entries rule), never under-counts a pile-up.
"""

from __future__ import annotations

import re

# The specification's formatting elements: the ones the tree builder reconstructs.
FORMATTING = frozenset({"a", "b", "big", "code", "em", "font", "i", "nobr", "s", "small", "strike", "strong",
                        "tt", "u"})
# Tags whose start or end closes the current block: the formatting elements open across them are
# reconstructed in the next block that gets text.
BLOCKS = frozenset({"address", "article", "aside", "blockquote", "center", "details", "dialog", "dir", "div", "dl",
                    "dd", "dt", "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5",
                    "h6", "header", "hgroup", "hr", "li", "listing", "main", "menu", "nav", "ol", "p", "pre",
                    "section", "summary", "table", "ul", "br", "tr", "td", "th"})
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9]*)")
# Skipped whole: their contents are text to the parser, not tags.
_RAW_TEXT = re.compile(r"<(script|style|textarea|title|xmp|iframe|noembed|noframes|plaintext)\b.*?</\1\s*>",
                       re.IGNORECASE | re.DOTALL)


def parse_cost(html: str, limit: int) -> int:
    """Elements the parser would build (an upper estimate), counting stops just past `limit`."""
    text = _RAW_TEXT.sub(" ", html) if "<" in html else html
    created, open_formatting, open_by_tag = 0, [], dict.fromkeys(FORMATTING, 0)
    for match in _TAG.finditer(text):
        closing, tag = match.group(1), match.group(2).lower()
        if tag in FORMATTING:
            if not closing:
                open_formatting.append(tag)
                open_by_tag[tag] += 1
                created += 1
            elif open_by_tag[tag]:  # the last one of its name goes (the adoption agency's outcome)
                at = len(open_formatting) - 1
                while open_formatting[at] != tag:  # near the end on real pages: a tag closes what it opened
                    at -= 1
                del open_formatting[at]
                open_by_tag[tag] -= 1
        else:
            created += not closing
            if tag in BLOCKS:
                created += len(open_formatting)
        if created > limit:
            break
    return created
