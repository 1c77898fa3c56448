"""The HTML5 parser's other quadratic costs, estimated before it runs: deep nesting and many attributes.

1. Nesting. At every block start tag (`<div>`, `<p>`, `<li>`, ...) the tree builder looks down the
   stack of open elements for a `<p>` to close ("in button scope"); the search stops only at a scope
   boundary (a table cell, a button, ...). Nested blocks without one make every start tag read the
   whole stack: 25,000 nested `<div>` took 1.2 s to parse and 50,000 took 7.9 s (lexbor through
   selectolax, measured); the 300,000 of a 1.5 MB page would take hours.
2. Attributes. Each attribute of a tag is checked against the ones before it: one `<img>` with
   25,000 attributes took 2.8 s, 50,000 took 14 s.

Both are estimated in linear time. Nesting keeps a model of the stack of open elements: start
tags push, end tags pop back to their element, void elements never stay open, a block closes a
`<p>` in scope, and an item whose end tag may be left out (`<li>`, a cell, ...) is closed by the
next one unless a list or table lies between. Where the model simplifies it keeps elements open,
so it over-counts the work.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict

from filters.html_cost import BLOCKS, iter_tags

# Scanning the stack for an element in (button) scope stops at these.
SCOPE_BOUNDARIES = frozenset({"applet", "button", "caption", "html", "marquee", "object", "table", "td", "template",
                              "th"})
VOID = frozenset({"area", "base", "basefont", "bgsound", "br", "col", "embed", "frame", "hr", "img", "input",
                  "keygen", "link", "meta", "param", "source", "track", "wbr"})
# An item the parser closes itself when the next one starts: the names it closes, and the
# containers that stop the search for them (a nested list's item does not close the outer one).
IMPLIED_END = {"li": ("li",), "dd": ("dd", "dt"), "dt": ("dd", "dt"), "option": ("option",),
               "optgroup": ("optgroup", "option"), "td": ("td", "th"), "th": ("td", "th"),
               "tr": ("tr", "td", "th"), "tbody": ("tbody", "thead", "tfoot", "tr", "td", "th"),
               "thead": ("tbody", "thead", "tfoot", "tr", "td", "th"), "tfoot": ("tbody", "thead", "tfoot", "tr", "td", "th")}
CONTAINERS = {"li": ("ul", "ol", "menu"), "dd": ("dl",), "dt": ("dl",), "option": ("select", "datalist"),
              "optgroup": ("select",), "td": ("table", "tr"), "th": ("table", "tr"), "tr": ("table", "tbody", "thead", "tfoot"),
              "tbody": ("table",), "thead": ("table",), "tfoot": ("table",)}
TABLE_PARTS = frozenset({"caption", "col", "colgroup", "tbody", "td", "tfoot", "th", "thead", "tr"})
CELL_ITEMS = frozenset({"td", "th", "tr", "tbody", "thead", "tfoot"})  # cells are themselves boundaries
# Stack elements read by scope searches, summed over the page's block start tags. Real pages stay
# under 1e6 (docs/BENCHMARKS.md); 50 million is ~10,000 nested blocks, about 0.1 s of parsing.
SCOPE_WORK_LIMIT = 50_000_000
# Attribute comparisons (n^2 / 2 per tag), summed over the page: 10,000 attributes in one tag.
ATTRIBUTE_WORK_LIMIT = 50_000_000
# Only a tag this long can hold enough attributes to matter; finding them is one linear scan.
_LONG_TAG = re.compile(r"<[A-Za-z][^<>]{2000,}")
_ATTRIBUTE = re.compile(r"""[^\s"'>/=]+(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s"'>]*))?""")


def depth_problem(html: str, names: Counter[str]) -> str | None:
    """Why the page would take the parser too long (a detail for html_too_complex), or None.
    `names` counts the page's tag names (lower case, end tags as "/name"), as html_cost has them."""
    starts = sum(n for name, n in names.items() if not name.startswith("/") and name not in VOID)
    block_starts = sum(names[name] for name in BLOCKS)
    if starts * block_starts > SCOPE_WORK_LIMIT and (work := scope_work(html, SCOPE_WORK_LIMIT)) > SCOPE_WORK_LIMIT:
        return (f"its elements nest so deep that the HTML5 parser's scope searches would read over "
                f"{SCOPE_WORK_LIMIT:,} open elements ({work:,} counted so far)")
    work = attribute_work(html)
    if work > ATTRIBUTE_WORK_LIMIT:
        return f"its tags hold so many attributes that the parser would compare {work:,} pairs of them"
    return None


def scope_work(html: str, limit: int) -> int:
    """Open elements a scope search reads, summed over block start tags; counting stops past `limit`."""
    stack: list[str] = []
    where: dict[str, list[int]] = defaultdict(list)  # stack positions of each open element name
    work = 0

    def last(*names: str) -> int:
        return max((where[n][-1] for n in names if where[n]), default=-1)

    def pop_to(position: int) -> None:  # close the element at `position` and everything above it
        while len(stack) > position:
            where[stack.pop()].pop()

    for closing, tag, _attrs in iter_tags(html):
        if closing:
            if where[tag]:
                pop_to(where[tag][-1])
            continue
        if tag in VOID or (tag in TABLE_PARTS and not where["table"]):  # a cell outside a table is ignored
            continue
        boundary = last(*SCOPE_BOUNDARIES)
        if tag in BLOCKS:
            work += len(stack) - max(boundary, 0)
            if work > limit:
                break
            if last("p") > boundary:  # a block start closes a p in (button) scope
                pop_to(last("p"))
        # A new <a> ends the open one; with a block opened inside it the adoption agency keeps that
        # block open (the tree deepens: 50,000 of <div><a> took 9.7 s), so only then it stays counted.
        if tag in ("a", "nobr") and where[tag] and last(*BLOCKS) < where[tag][-1]:
            pop_to(where[tag][-1])
        if tag in IMPLIED_END:  # a new item closes the open one, unless a list or cell lies between
            sibling = last(*IMPLIED_END[tag])
            if sibling > max(boundary if tag not in CELL_ITEMS else -1, last(*CONTAINERS[tag])):
                pop_to(sibling)
        where[tag].append(len(stack))
        stack.append(tag)
    return work


def attribute_work(html: str) -> int:
    """Pairs of attributes the parser compares, summed over tags long enough to hold many."""
    work = 0
    for match in _LONG_TAG.finditer(html):
        attributes = sum(1 for _ in _ATTRIBUTE.finditer(match.group(), 1)) - 1  # less the tag name
        work += attributes * (attributes - 1) // 2
    return work
