"""An HTML page to interleaved nodes (paragraphs and images in reading order), as OBELICS does it.

OBELICS (Laurençon et al. 2023, §3.2 and appendix A.1) simplifies the DOM before extraction: it
drops comments and non-content elements (scripts, styles, navigation, headers, footers, forms,
iframes, hidden elements), unwraps formatting tags so their text joins the surrounding paragraph,
and cuts text into paragraphs at block boundaries; images stay where they stand, with their URL
resolved against the page. Their code (a selectolax walk with old pins) no longer runs, so this is
our own walk over lexbor's HTML5 tree (selectolax >= 1.0): the parser builds a spec-conformant
tree from any markup, however malformed, and the walk is iterative, so a page nested 5,000 levels
deep costs a loop, not a recursion.

Which nodes to keep is not decided here: image URL rules (logo, icon, ...) and paragraph rules are
stages (pipelines/stages/obelics_nodes.py), so every removal is counted as an edit.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

from filters.document import ImageNode, Node, TextNode

# Elements whose whole subtree is not content (OBELICS' simplification list, plus elements that
# never render text: templates, SVG and MathML markup, media fallbacks).
REMOVED = frozenset({
    "head", "script", "style", "noscript", "nav", "header", "footer", "form", "iframe", "frame", "frameset",
    "template", "svg", "math", "button", "select", "textarea", "input", "option", "object", "embed",
    "canvas", "video", "audio", "map", "dialog", "menu", "aside",
})
# Elements that start and end a paragraph; everything else (b, i, span, a, em, strong, font, ...)
# is unwrapped: its text joins the paragraph around it.
BLOCKS = frozenset({
    "address", "article", "blockquote", "body", "caption", "center", "dd", "details", "div", "dl", "dt",
    "fieldset", "figcaption", "figure", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "html", "li", "main",
    "ol", "p", "pre", "section", "summary", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul",
    "legend", "hgroup",
})
_BOILERPLATE_CLASSES = frozenset({"footer", "site-info"})
_BOILERPLATE_NAMES = frozenset({"footer", "header", "nav", "navbar", "navigation", "menu"})
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.I)
_SPACES = re.compile(r"[^\S\n]+")
_SRCSET_GAP = re.compile(r"[\s,]*")
_SRCSET_URL = re.compile(r"\S+")
_QUOTES = re.compile('[”"<>]')
_PIXELS = re.compile(r"([0-9]{1,6})(?:\s*px;?|\.[0-9]*)?")  # 6 digits: far past any max_side
_PERCENT = re.compile(r"([0-9]{1,3})%")
_LAZY_SOURCES = ("data-src", "data-lazy-src", "data-original")  # lazy loaders keep the real src here


def declared_size(attributes) -> dict[str, int]:
    """The <img>'s width/height attributes as OBELICS reads them (`format_image_size`,
    simplification_utils.py:101-115): "60", "60px" and "60.7" are pixels, {"width": 60}; an integer
    percentage is {"width_percent": p}; "auto", "full-width" and anything else, no size."""
    out = {}
    for side in ("width", "height"):
        value = _QUOTES.sub("", attributes.get(side) or "").strip()
        if m := _PIXELS.fullmatch(value):
            out[side] = int(m.group(1))
        elif m := _PERCENT.fullmatch(value):
            out[f"{side}_percent"] = int(m.group(1))
    return out


@dataclass(slots=True)
class ExtractedPage:
    nodes: list[Node] = field(default_factory=list)
    title: str | None = None
    canonical_url: str | None = None  # <link rel=canonical>, else og:url: for pages saved without their URL
    lang: str | None = None  # <html lang>


def extract(html: str, page_url: str | None) -> ExtractedPage:
    """Paragraphs and images of the page in reading order."""
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(html)
    page = ExtractedPage()
    base = page_url
    if tree.root is not None:
        base, page.canonical_url, page.title = _page_facts(tree.root, page_url)
    root = tree.root
    if root is not None and root.attributes.get("lang"):
        page.lang = root.attributes["lang"]
    body = tree.body
    if body is not None:
        page.nodes = _walk(body, base, _ProseGuard(body))
    return page


def _page_facts(root, page_url: str | None) -> tuple[str | None, str | None, str | None]:
    """(base URL, canonical URL, title). Searched in the whole document, not <head> alone: an
    element the parser does not allow in <head> (a tracking pixel's <noscript><img>) ends it, and
    the <link rel=canonical> and <title> after it land in <body>, as in browsers. The first of each
    counts; an <svg>'s <title> (an icon's tooltip) is not the page's."""
    base, canonical, og_url, title = page_url, None, None, None
    for element in root.css("base[href], link[rel][href], meta[property][content], title"):
        attrs = element.attributes
        if element.tag == "base" and base == page_url:
            try:
                base = urljoin(page_url or "", attrs.get("href") or "") or page_url
            except ValueError:  # <base href="http://[oops/">: a broken base is ignored, not the page
                base = page_url
        elif element.tag == "link" and "canonical" in (attrs.get("rel") or "").lower().split():
            canonical = canonical or attrs.get("href")
        elif element.tag == "meta" and (attrs.get("property") or "").lower() == "og:url":
            og_url = og_url or attrs.get("content")
        elif element.tag == "title" and title is None and not _inside_svg(element):
            title = _SPACES.sub(" ", element.text(deep=True) or "").strip() or None
    return base, canonical or og_url, title


def _inside_svg(element) -> bool:
    parent = element.parent
    while parent is not None:
        if parent.tag == "svg":
            return True
        parent = parent.parent
    return False


def _walk(body, base: str | None, guard: _ProseGuard) -> list[Node]:
    nodes: list[Node] = []
    buffer: list[str] = []

    def flush() -> None:
        if buffer:
            text = _paragraph("".join(buffer))
            buffer.clear()
            if text:
                nodes.append(TextNode(text))

    stop = body.mem_id
    node = body.child
    while node is not None:
        tag = node.tag
        descend = False
        if tag == "-text":
            buffer.append(node.text_content or "")
        elif tag in REMOVED or tag[0] in "-_!":  # comments, doctype, processing instructions
            pass
        elif _hidden(node) or (_boilerplate_by_name(node) and not guard.holds_the_prose(node)):
            pass
        elif tag == "img":
            flush()
            image = _image(node, base)
            if image is not None:
                nodes.append(image)
        elif tag == "picture":
            flush()
            image = _picture(node, base)
            if image is not None:
                nodes.append(image)
        elif tag == "br":
            buffer.append("\n")
        else:
            if tag in BLOCKS:
                flush()
            descend = node.child is not None
        if descend:
            node = node.child
            continue
        while node.next is None:  # climb to the next sibling, closing the blocks left behind
            node = node.parent
            if node is None or node.mem_id == stop:
                flush()
                return nodes
            if node.tag in BLOCKS:
                flush()
        node = node.next
    flush()
    return nodes


def _paragraph(text: str) -> str:
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def _hidden(node) -> bool:
    """Hidden from readers, or a navigation/footer container by its name (OBELICS
    dom_tree_simplificator.py l.118-168: class token footer or site-info; a div whose id, class or
    title is exactly footer, header, nav, navbar, navigation or menu)."""
    attrs = node.attributes
    if not attrs:
        return False
    if "hidden" in attrs or (attrs.get("aria-hidden") or "").lower() == "true" or _HIDDEN_STYLE.search(
            attrs.get("style") or ""):
        return True
    classes = (attrs.get("class") or "").lower()
    if _BOILERPLATE_CLASSES.intersection(classes.split()):
        return True
    return node.tag == "div" and any((attrs.get(a) or "").strip().lower() in _BOILERPLATE_NAMES
                                     for a in ("id", "class", "title"))


# Containers named like page furniture (class or id), the way trafilatura and readability find them:
# a keyword starts the attribute, or one of its -/_ separated parts. Measured on 19 real English
# pages (tests/bench/bench_obelics.py): boilerplate share of our kept words 0.17 -> see BENCHMARKS.md.
_FURNITURE = re.compile(
    r"(?:^|[\s_-])(?:comment|related|popular|sidebar|share|sharing|social|cookie|consent|newsletter|subscri"
    r"|breadcrumb|promo|advert|hatnote|sitemap|popup|modal|author-?box|author-?info|author-?bio|sr-only"
    r"|screen-reader|visually-hidden|d-none|u-hidden|more-post|next-post|prev-post|(?:bio|ad|ads)(?=$|[\s_-]))",
    re.I)
_FURNITURE_ROLES = frozenset({"navigation", "complementary", "contentinfo", "banner", "dialog", "search"})


def _boilerplate_by_name(node) -> bool:
    attrs = node.attributes
    if not attrs:
        return False
    if (attrs.get("role") or "").strip().lower() in _FURNITURE_ROLES:
        return True
    return bool(_FURNITURE.search(attrs.get("class") or "") or _FURNITURE.search(attrs.get("id") or ""))


class _ProseGuard:
    """Never drops, by its name, an element that holds half the page's paragraph text or more: some
    sites wrap the article itself in a container named `widget-area` or `l-sidebar-fixed`. Each check
    measures the element's subtree, so a page gets MAX_CHECKS of them; past that (20,000 nested
    `div.sidebar`, say) named elements are kept: losing boilerplate beats losing the article."""

    MAX_CHECKS = 64

    def __init__(self, body):
        self.total = sum(len(p.text(deep=True) or "") for p in body.css("p"))
        self.checks = 0

    def holds_the_prose(self, node) -> bool:
        if not self.total:
            return False
        self.checks += 1
        if self.checks > self.MAX_CHECKS:
            return True
        inside = sum(len(p.text(deep=True) or "") for p in node.css("p"))
        return inside * 2 >= self.total


def _resolve(url: str | None, base: str | None) -> str | None:
    if not url:
        return None
    url = url.strip()
    if not url or url.startswith(("data:", "javascript:", "about:", "blob:")):
        return None
    try:
        resolved = urljoin(base, url) if base else url
        parts = urlsplit(resolved)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return resolved


def srcset_candidates(srcset: str) -> list[tuple[str, float]]:
    """(URL, size) per candidate, parsed as WHATWG's srcset algorithm does it, in linear time: a URL
    runs to the next whitespace (so a comma inside it stays: Cloudinary's `w_400,h_300/x.jpg`), and
    trailing commas end it; the descriptors run to the next comma. A candidate whose descriptor does
    not parse is dropped, as browsers drop it."""
    out, pos, end = [], 0, len(srcset)
    while True:
        pos = _SRCSET_GAP.match(srcset, pos).end()
        if pos >= end:
            return out
        url = _SRCSET_URL.match(srcset, pos).group()
        pos += len(url)
        descriptor = ""
        if url.endswith(","):
            url = url.rstrip(",")
        else:
            comma = srcset.find(",", pos)
            comma = end if comma < 0 else comma
            descriptor, pos = srcset[pos:comma], comma + 1
        size = _descriptor_size(descriptor.split())
        if url and size is not None:
            out.append((url, size))


def _descriptor_size(tokens: list[str]) -> float | None:
    if not tokens:
        return 1.0  # no descriptor is 1x
    token = tokens[0].lower()
    try:
        if token.endswith("w"):
            width = token[:-1]
            if not width.isascii() or not width.isdigit() or len(width) > 9:  # 400 digits overflowed a float
                return None  # the candidate is dropped, as browsers drop it; the page stays
            return int(width) * 10_000.0  # any width beats a bare density
        if token.endswith("x"):
            value = float(token[:-1])
            return value if math.isfinite(value) and value > 0 else None
    except ValueError:
        return None
    return None


def largest_srcset_candidate(srcset: str | None) -> str | None:
    """The srcset candidate with the largest width (or density) descriptor; no descriptor is 1x."""
    best, best_size = None, -1.0
    for url, size in srcset_candidates(srcset or ""):
        if size > best_size:
            best, best_size = url, size
    return best


def _image(node, base: str | None, srcset_extra: list[str] | None = None) -> ImageNode | None:
    attrs = node.attributes
    srcsets = [s for s in (*(srcset_extra or ()), attrs.get("srcset")) if s]
    candidates = [largest_srcset_candidate(", ".join(srcsets)), attrs.get("src"),
                  *(attrs.get(name) for name in _LAZY_SOURCES)]
    url = next((r for r in (_resolve(c, base) for c in candidates if c) if r), None)
    if url is None:
        return None
    meta = declared_size(attrs)
    alt = _SPACES.sub(" ", attrs.get("alt") or "").strip() or None
    return ImageNode(url, alt_text=alt, meta=meta)


def _picture(node, base: str | None) -> ImageNode | None:
    """<picture>: the largest candidate among its <source> srcsets, with the <img>'s alt text."""
    sources, img = [], None
    for child in node.iter():
        if child.tag == "source" and child.attributes.get("srcset"):
            sources.append(child.attributes["srcset"].strip().rstrip(","))
        elif child.tag == "img" and img is None:
            img = child
    if img is None:
        if not sources:
            return None
        url = _resolve(largest_srcset_candidate(", ".join(sources)), base)
        return ImageNode(url) if url else None
    return _image(img, base, sources)


def page_domain(url: str | None) -> str | None:
    try:
        host = urlsplit(url or "").hostname
    except ValueError:
        return None
    return host.removeprefix("www.") if host else None
