"""What an HTML page will cost the HTML5 parser, estimated before it runs.

The HTML5 tree builder "reconstructs the active formatting elements": formatting tags left open
(`<b>`, `<font>`, ...) are cloned again into every new block that gets text. Distinct open tags (so
the three-identical-entries rule never trims them) times paragraphs is quadratic: 3,000 open
`<b id=..>` and 3,000 `<p>` is a 120 KB page that builds 9 million elements and took 4 GB (measured,
lexbor through selectolax); a 400 KB one would need ~35 GB and take the whole run down with it.
Every HTML5 parser (and browser) does this by the specification, so the page is refused before parsing.

The estimate is one pass over the tags, in time linear in the page: elements created by tags, plus,
at each boundary that closes a block, the formatting entries still active. It follows the rules that
keep the list short on real (sloppy) pages: a new `<a>` or `<nobr>` ends the previous one, at most
three identical entries are kept, table cells start afresh (a marker), `<br>` closes nothing. Where
it simplifies it over-counts, so a real pile-up is never missed.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict

# The specification's formatting elements: the ones the tree builder reconstructs.
FORMATTING = frozenset({"a", "b", "big", "code", "em", "font", "i", "nobr", "s", "small", "strike", "strong",
                        "tt", "u"})
# One of these starting while another is active ends the older one (the adoption agency runs first).
ONE_AT_A_TIME = frozenset({"a", "nobr"})
# Start or end tags that close the block holding the active formatting elements, so the next text
# rebuilds them (a new <p> closes an open p; </div> closes everything inside it).
BLOCKS = frozenset({"address", "article", "aside", "blockquote", "center", "details", "dialog", "dir", "div", "dl",
                    "dd", "dt", "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5",
                    "h6", "header", "hgroup", "hr", "li", "listing", "main", "menu", "nav", "ol", "p", "pre",
                    "section", "summary", "table", "ul"})
# Cells start with a marker: formatting active outside a cell is not rebuilt inside it.
CELLS = frozenset({"td", "th", "caption"})
CELL_ENDS = frozenset({"tr", "table", "tbody", "thead", "tfoot"})
IDENTICAL_KEPT = 3
# A tag with at most 200 characters of attributes counted as its identity; `[^<>]` keeps each match
# from running past the next tag, so the scan stays linear on a page of unclosed `<b`.
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9]*)([^<>]{0,200})")
# Elements whose contents are text to the parser, not tags.
_RAW_TEXT_START = re.compile(r"<(script|style|textarea|title|xmp|iframe|noembed|noframes|plaintext)\b|<!--",
                             re.IGNORECASE)
_RAW_TEXT_END = {name: re.compile(f"</{name}", re.IGNORECASE) for name in
                 ("script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes")}


_NAME = re.compile(r"<(/?[A-Za-z][A-Za-z0-9]*)")


def tag_names(html: str) -> Counter[str]:
    """How many tags of each name the page has (lower case; end tags as "/name")."""
    names: Counter[str] = Counter()
    for name, n in Counter(_NAME.findall(html)).items():  # case folded per distinct spelling, not per tag
        names[name.lower()] += n
    return names


def over_limit(html: str, limit: int, names: Counter[str] | None = None) -> int | None:
    """parse_cost when it passes `limit`, else None. First a bound from tag counts alone (every
    formatting start tag rebuilt at every block boundary), 4x cheaper than the walk: real pages stay
    far under it (measured: docs/BENCHMARKS.md), so only a page that could pile up is walked."""
    names = tag_names(html) if names is None else names
    starts = sum(n for name, n in names.items() if not name.startswith("/"))
    formatting = sum(names[name] for name in FORMATTING)
    boundaries = sum(names[name] + names["/" + name] for name in BLOCKS)
    if starts + formatting * boundaries <= limit:
        return None
    cost = parse_cost(html, limit)
    return cost if cost > limit else None


def parse_cost(html: str, limit: int) -> int:
    """Elements the parser would build (an upper estimate), counting stops just past `limit`."""
    created = 0
    active = 0  # active formatting entries since the last cell marker
    markers: list[int] = []  # `active` outside each open cell
    open_by_tag: dict[str, list[str]] = defaultdict(list)  # per tag, the identities of its active entries
    identical: dict[tuple[str, str], int] = defaultdict(int)
    for closing, tag, attrs in iter_tags(html):
        if tag in FORMATTING:
            if closing:
                if open_by_tag[tag]:  # the last one of its name goes (the adoption agency's outcome)
                    identical[(tag, open_by_tag[tag].pop())] -= 1
                    active = max(0, active - 1)
                continue
            created += 1
            if tag in ONE_AT_A_TIME and open_by_tag[tag]:
                identical[(tag, open_by_tag[tag].pop())] -= 1
                active = max(0, active - 1)
            identity = attrs.strip()
            if identical[(tag, identity)] >= IDENTICAL_KEPT:
                continue  # the oldest identical entry makes way for this one: the count stays
            identical[(tag, identity)] += 1
            open_by_tag[tag].append(identity)
            active += 1
        elif tag in CELLS and not closing:
            created += 1
            markers.append(active)
            active = 0
        elif (tag in CELLS and closing) or tag in CELL_ENDS:
            created += not closing
            if markers:
                active = markers.pop()
        else:
            created += not closing
            if tag in BLOCKS:
                created += active
        if created > limit:
            break
    return created


def iter_tags(html: str):
    """(closing, lower-case name, attribute text) of every tag outside raw-text elements and
    comments, in one pass."""
    position = 0
    while position < len(html):
        raw = _RAW_TEXT_START.search(html, position)
        stop = raw.start() if raw else len(html)
        for match in _TAG.finditer(html, position, stop):
            yield match.group(1) == "/", match.group(2).lower(), match.group(3)
        if raw is None:
            return
        if raw.group(1) is None:  # a comment: its tags are text (an unclosed one runs to the end)
            end = html.find("-->", raw.end())
            if end < 0:
                return
            position = end + 3
            continue
        name = raw.group(1).lower()
        yield False, name, ""
        end = _RAW_TEXT_END[name].search(html, raw.end()) if name in _RAW_TEXT_END else None
        if end is None:  # unclosed (or <plaintext>): the rest of the page is its text
            return
        position = end.start()
