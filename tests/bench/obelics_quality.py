"""Part A of bench_obelics.py: OBELICS extraction quality against trafilatura, page by page.

The matching rules (tokens, 3-gram recall, boilerplate share) are described in bench_obelics.py's
docstring; `quality(paths)` prints the per-page table, the aggregates and the traces.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

DETAIL = os.environ.get("BENCH_OBELICS_DETAIL", "3")  # worst pages traced per figure, or "all"
MIN_PARAGRAPH_TOKENS = 4
FOUND_SHARE = 0.8
RECALL_TARGET, BOILERPLATE_TARGET = 0.9, 0.15


# ---------------------------------------------------------------- tokens
_TOKEN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]|[^\W_]+")
_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u200b\u200c\u200d\u2060\ufeff"))


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(unicodedata.normalize("NFKC", text).translate(_INVISIBLE).lower())


def trigrams(toks: list[str]) -> set[tuple[str, ...]]:
    return {tuple(toks[i:i + 3]) for i in range(len(toks) - 2)}


def found_share(para: list[str], grams: set, bag: set) -> tuple[float, float]:
    """(share of the paragraph's 3-grams in `grams`, share of its tokens in `bag`)."""
    own = [tuple(para[i:i + 3]) for i in range(len(para) - 2)]
    by_gram = sum(g in grams for g in own) / len(own) if own else float(all(t in bag for t in para))
    return by_gram, sum(t in bag for t in para) / len(para)


def uncovered(para: list[str], grams: set, bag: set) -> tuple[int, int]:
    """(tokens of one kept paragraph in no 3-gram of `grams`, tokens not in `bag`)."""
    if len(para) < 3:
        missing = sum(t not in bag for t in para)
        return missing, missing
    hit = [tuple(para[i:i + 3]) in grams for i in range(len(para) - 2)]
    covered = [any(hit[j] for j in range(max(0, i - 2), min(i, len(hit) - 1) + 1)) for i in range(len(para))]
    return covered.count(False), sum(t not in bag for t in para)


# ---------------------------------------------------------------- A. quality
@dataclass
class PageQuality:
    name: str
    english: bool
    raw_text: int  # paragraphs our walk produced
    raw_images: int
    kept_text: int  # after the node rules
    kept_images: int
    kept_tokens: int
    doc_verdict: str
    ref_paragraphs: int  # trafilatura's paragraphs of >= 4 tokens
    ref_tokens: int
    found: int = 0
    found_tokens: int = 0
    found_bag: int = 0
    found_bag_tokens: int = 0
    prose_paragraphs: int = 0  # reference paragraphs that are not list items ("- ") or table rows ("|")
    found_prose: int = 0
    boiler_tokens: int = 0
    boiler_bag_tokens: int = 0
    missed: list[tuple[str, str]] = field(default_factory=list)  # (paragraph, cause)
    missed_causes: Counter = field(default_factory=Counter)  # cause -> tokens
    extra: list[tuple[float, str, str]] = field(default_factory=list)  # (share not in ref, paragraph, path)
    extra_places: Counter = field(default_factory=Counter)  # place_of(path) -> boilerplate tokens

    @property
    def recall(self) -> float:
        return self.found / self.ref_paragraphs if self.ref_paragraphs else 1.0

    @property
    def recall_prose(self) -> float:
        return self.found_prose / self.prose_paragraphs if self.prose_paragraphs else 1.0

    @property
    def recall_bag(self) -> float:
        return self.found_bag / self.ref_paragraphs if self.ref_paragraphs else 1.0

    @property
    def boilerplate(self) -> float | None:
        return self.boiler_tokens / self.kept_tokens if self.kept_tokens else None

    @property
    def boilerplate_bag(self) -> float | None:
        return self.boiler_bag_tokens / self.kept_tokens if self.kept_tokens else None


def element_path(tree, text: str, depth: int = 7) -> str:
    """tag#id.class chain (innermost last) of the longest text node of the page that `text` holds;
    an ancestor that our walk drops whole (REMOVED, or hidden) is marked with '!'."""
    from filters import html_extract

    removed = getattr(html_extract, "REMOVED", frozenset())
    hidden = getattr(html_extract, "_hidden", lambda _node: False)  # private: the bench must outlive a rename

    want = " ".join(tokens(text))
    best, best_len = None, 0
    for top in (tree.body, tree.root):  # the page's body first: <title> repeats the headline
        for node in top.traverse(include_text=True) if top is not None else ():
            if node.tag != "-text":
                continue
            piece = " ".join(tokens(node.text_content or ""))
            if len(piece) > best_len and piece.count(" ") >= 1 and piece in want:
                best, best_len = node, len(piece)
        if best is not None:
            break
    if best is None:
        return "?"
    chain, node = [], best.parent
    while node is not None and node.tag not in ("html", "-undef") and len(chain) < 40:
        attrs = node.attributes or {}
        label = node.tag + (f"#{attrs['id']}" if attrs.get("id") else "")
        label += "".join(f".{c}" for c in (attrs.get("class") or "").split()[:2])
        if node.tag in removed or hidden(node):
            label = "!" + label
        chain.append(label[:48])
        node = node.parent
    chain.reverse()
    marked = [i for i, label in enumerate(chain) if label.startswith("!")]
    if marked and marked[0] < len(chain) - depth:  # keep the dropping ancestor in view
        return " > ".join(chain[marked[0]:marked[0] + 2] + ["..."] + chain[-(depth - 3):])
    return " > ".join(chain[-depth:])


# Where extra (boilerplate) tokens sit, by keywords of their element path (first match wins).
PLACES = (
    ("pop-ups: cookies, consent, newsletter, modals, calls to action", re.compile(
        r"cookie|consent|privacy|newsletter|signup|subscribe|modal|popup|cta")),
    ("comments", re.compile(r"comment")),
    ("hidden by a class (sr-only, d-none, ...)", re.compile(r"sr-only|screen-reader|d-none|hidden|invisible")),
    ("image galleries / slideshows", re.compile(r"gallery|slideshow")),
    ("related / popular / next-post teasers", re.compile(
        r"related|popular|more-about|more-post|nwrel|next|prev|recommend|featured|transp|read-?more|post-item|"
        r"story|selection")),
    ("sidebar / widget", re.compile(r"sidebar|widget|side-?tab|aside")),
    ("site links: nav, sitemap, breadcrumbs, hatnotes, skip links", re.compile(
        r"nav|sitemap|menu|gototop|breadcrumb|hatnote|jump|sitesub|skip|linklist")),
    ("author box / byline", re.compile(r"author|byline|bio\b")),
    ("figure captions", re.compile(r"caption|figure|-img|cite")),
    ("headline (h1)", re.compile(r"(^| > )h1[.#]?[^>]*$")),
)


def place_of(path: str) -> str:
    lowered = path.lower()
    return next((name for name, pattern in PLACES if pattern.search(lowered)), "elsewhere")


def page_quality(path: Path, node_config, doc_config, words, language) -> PageQuality:
    import trafilatura
    from selectolax.lexbor import LexborHTMLParser

    from filters.document import ImageNode, TextNode
    from filters.obelics_rules import document_failure, filter_nodes, text_failure
    from filters.text_quality import standardize_whitespace, text_stats
    from filters.web_page import decode_html
    from pipelines.io.web_readers import document_from_html

    page = decode_html(path.read_bytes(), None)
    url = f"https://{path.stem}/"
    doc = document_from_html(path.stem, str(path), url, page.html, {})
    raw_nodes = list(doc.nodes)
    reasons = {}  # id(raw text node) -> the rule it fails (as filter_nodes decides it)
    for node in raw_nodes:
        if isinstance(node, TextNode):
            stats = text_stats(standardize_whitespace(node.text), words.stop, words.flagged, words.common,
                               node_config.punctuation_min_words)
            reasons[id(node)] = text_failure(stats, node_config)
    filter_nodes(doc, node_config, words)
    kept_paras = [tokens(n.text) for n in doc.nodes if isinstance(n, TextNode)]
    verdict = document_failure(doc, doc_config, words, language)
    ref_text = trafilatura.extract(page.html, url=url, include_comments=False, include_tables=True,
                                   output_format="txt") or ""
    ref_lines = [line for line in ref_text.splitlines() if line.strip()]
    ref_paras = [(line, toks) for line in ref_lines if len(toks := tokens(line)) >= MIN_PARAGRAPH_TOKENS]
    english = bool(ref_text.strip()) and language.predict([ref_text.lower()])[0].label == "en"

    q = PageQuality(
        path.stem, english,
        raw_text=sum(isinstance(n, TextNode) for n in raw_nodes),
        raw_images=sum(isinstance(n, ImageNode) for n in raw_nodes),
        kept_text=len(kept_paras), kept_images=sum(isinstance(n, ImageNode) for n in doc.nodes),
        kept_tokens=sum(map(len, kept_paras)), doc_verdict=verdict[0] if verdict else "kept",
        ref_paragraphs=len(ref_paras), ref_tokens=sum(len(t) for _, t in ref_paras))

    kept_stream = [t for para in kept_paras for t in para]
    kept_grams, kept_bag = trigrams(kept_stream), set(kept_stream)
    raw_text_nodes = [(n, tokens(n.text)) for n in raw_nodes if isinstance(n, TextNode)]
    raw_stream = [t for _, toks in raw_text_nodes for t in toks]
    raw_grams = trigrams(raw_stream)
    tree = None
    for line, toks in ref_paras:
        by_gram, by_bag = found_share(toks, kept_grams, kept_bag)
        q.found_bag += by_bag >= FOUND_SHARE
        q.found_bag_tokens += len(toks) if by_bag >= FOUND_SHARE else 0
        prose = not line.lstrip().startswith(("- ", "|"))  # trafilatura's txt marks list items and table rows
        q.prose_paragraphs += prose
        if by_gram >= FOUND_SHARE:
            q.found += 1
            q.found_prose += prose
            q.found_tokens += len(toks)
            continue
        # Missed: did our walk produce it (and a rule remove it), or not?
        if found_share(toks, raw_grams, set())[0] >= FOUND_SHARE:
            own = trigrams(toks)
            node = max(raw_text_nodes, key=lambda nt: len(own & trigrams(nt[1])))[0]
            cause = f"extracted, removed: paragraph_{reasons.get(id(node)) or 'kept?'}"
            if reasons.get(id(node)) is None:
                cause = "extracted, kept only in part (the rest fell in removed paragraphs)"
        else:
            tree = tree or LexborHTMLParser(page.html)
            cause = "not extracted: " + element_path(tree, line)
        q.missed.append((line, cause))
        q.missed_causes[cause.split(":")[0] if cause.startswith("not") else cause] += len(toks)

    ref_stream = tokens(ref_text)
    ref_grams, ref_bag = trigrams(ref_stream), set(ref_stream)
    for node in doc.nodes:
        if not isinstance(node, TextNode):
            continue
        toks = tokens(node.text)
        by_gram, by_bag = uncovered(toks, ref_grams, ref_bag)
        q.boiler_tokens += by_gram
        q.boiler_bag_tokens += by_bag
        if by_gram:
            tree = tree or LexborHTMLParser(page.html)
            where = element_path(tree, node.text)
            q.extra_places[place_of(where)] += by_gram
            if by_gram / len(toks) > 0.5:
                q.extra.append((by_gram / len(toks), node.text, where))
    return q


def _fmt(x: float | None) -> str:
    return "  n/a" if x is None else f"{x:5.2f}"


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _clip(text: str, n: int = 110) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n - 3] + "..."


def quality(paths: list[Path]) -> list[PageQuality]:
    from filters.language import LanguageIdentifier
    from filters.model_files import default_lid_model_path
    from filters.obelics_rules import WordLists
    from pipelines.stages.obelics_documents import DocumentRulesConfig
    from pipelines.stages.obelics_nodes import NodeRulesConfig

    node_config, doc_config = NodeRulesConfig(), DocumentRulesConfig()
    words = WordLists.load(node_config)
    language = LanguageIdentifier(default_lid_model_path())
    results = [page_quality(p, node_config, doc_config, words, language) for p in paths]

    print("A. QUALITY: our kept paragraphs (node rules, obelics.yaml defaults) vs trafilatura's main text")
    print(f"   recall: trafilatura paragraphs (>= {MIN_PARAGRAPH_TOKENS} tokens) found, >= {FOUND_SHARE:.0%} of their "
          "3-grams in our kept text (bag: of their tokens)")
    print("   boilerplate: our kept tokens in no 3-gram of trafilatura's text (bag: not in its text at all)")
    header = (f"{'page':32s} {'lang':4s} {'walk t/i':>9s} {'kept p':>6s} {'img':>4s} {'words':>6s} {'ref p':>5s} "
              f"{'recall':>6s} {'(bag)':>5s} {'prose':>5s} {'boiler':>6s} {'(bag)':>5s}  document rules")
    print(header)
    print("-" * len(header))
    for q in results:
        print(f"{q.name[:32]:32s} {'en' if q.english else '--':4s} {q.raw_text:4d}/{q.raw_images:<4d} {q.kept_text:6d} "
              f"{q.kept_images:4d} {q.kept_tokens:6d} {q.ref_paragraphs:5d} {q.recall:6.2f} {q.recall_bag:5.2f} "
              f"{q.recall_prose:5.2f} {_fmt(q.boilerplate):>6s} {_fmt(q.boilerplate_bag):>5s}  {q.doc_verdict}")

    print()
    print(f"{'aggregate':32s} {'pages':>5s} {'recall':>7s} {'(bag)':>6s} {'prose':>6s} {'boiler':>7s} {'(bag)':>6s}   "
          f"targets: recall >= {RECALL_TARGET}, boilerplate <= {BOILERPLATE_TARGET}")
    for label, group in (("English", [q for q in results if q.english]), ("all", results)):
        boiled = [q for q in group if q.boilerplate is not None]
        print(f"{'macro, ' + label:32s} {len(group):5d} {_fmt(_mean([q.recall for q in group])):>7s} "
              f"{_fmt(_mean([q.recall_bag for q in group])):>6s} {_fmt(_mean([q.recall_prose for q in group])):>6s} "
              f"{_fmt(_mean([q.boilerplate for q in boiled])):>7s} "
              f"{_fmt(_mean([q.boilerplate_bag for q in boiled])):>6s}"
              f"   ({len(group) - len(boiled)} page(s) kept no text: recall 0, no boilerplate share)")
        ref_tok = sum(q.ref_tokens for q in group)
        kept_tok = sum(q.kept_tokens for q in group)
        print(f"{'word-weighted, ' + label:32s} {len(group):5d} "
              f"{_fmt(sum(q.found_tokens for q in group) / ref_tok if ref_tok else None):>7s} "
              f"{_fmt(sum(q.found_bag_tokens for q in group) / ref_tok if ref_tok else None):>6s} {'':6s} "
              f"{_fmt(sum(q.boiler_tokens for q in group) / kept_tok if kept_tok else None):>7s} "
              f"{_fmt(sum(q.boiler_bag_tokens for q in group) / kept_tok if kept_tok else None):>6s}"
              f"   ({ref_tok:,} reference tokens, {kept_tok:,} kept tokens)")

    _print_shares("why English reference tokens were missed (tokens of missed paragraphs, by cause):",
                  [q.missed_causes for q in results if q.english])
    _print_shares("where English boilerplate tokens sit (element path keywords of their kept paragraph):",
                  [q.extra_places for q in results if q.english])
    _trace(results)
    return results


def _print_shares(title: str, tallies: list) -> None:
    """Counts summed over pages, each printed with its share of the total."""
    counts = Counter()
    for tally in tallies:
        counts.update(tally)
    total = sum(counts.values())
    if total:
        print(f"\n{title}")
        for name, n in counts.most_common():
            print(f"  {n / total:6.1%}  {n:6,d}  {name}")


def _trace(results: list[PageQuality]) -> None:
    english = [q for q in results if q.english]
    n = len(english) if DETAIL == "all" else int(DETAIL)
    print("\nworst English pages for recall (up to 6 missed paragraphs each, with cause):")
    for q in sorted(english, key=lambda q: q.recall)[:n]:
        print(f"  {q.name}: recall {q.recall:.2f} ({q.found}/{q.ref_paragraphs}), missed tokens by cause "
              + ", ".join(f"{c} {k}" for c, k in q.missed_causes.most_common()))
        for line, cause in q.missed[:6]:
            print(f"    - {_clip(line, 90)!r}\n        {cause}")
    print("\nworst English pages for boilerplate share (up to 6 kept paragraphs mostly absent from trafilatura):")
    for q in sorted(english, key=lambda q: -(q.boilerplate or 0))[:n]:
        print(f"  {q.name}: boilerplate {_fmt(q.boilerplate).strip()} ({q.boiler_tokens}/{q.kept_tokens} tokens)")
        for share, text, path in sorted(q.extra, key=lambda e: -len(e[1]))[:6]:
            print(f"    - {share:.0%} {_clip(text, 90)!r}\n        at {path}")
