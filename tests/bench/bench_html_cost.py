"""Benchmark: the HTML parse-cost guard (filters/html_cost.py) against the parse it guards.

On the saved real pages in ../shared/data/web/pages (skipped cleanly where absent), in one process:
  - accuracy: the estimate over lexbor's element count (selectolax LexborHTMLParser, elements only),
    per page: min / median / max of the ratio, and the largest estimate (the guard's limit is 1,000,000);
  - speed: the guard's time as a ratio of the parse's time (both wall clock, best of 5 passes over all
    pages), since the guard runs before every parse;
  - pile-ups: 3,000 distinct open <b> and 3,000 paragraphs (120 KB), estimated vs built, and the guard's
    time on 1 MB of unclosed "<b" (linear: no rescans);
  - nesting and attributes (filters/html_depth_cost.py): both guards' time over the parse's, the largest
    real figures against the limits, and nested <div> parsed vs guarded.

    .venv/bin/python tests/bench/bench_html_cost.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from filters.html_cost import over_limit, parse_cost  # noqa: E402

PAGES = ROOT.parent / "shared" / "data" / "web" / "pages"


def elements(html: str) -> int:
    from selectolax.lexbor import LexborHTMLParser

    return sum(1 for _ in LexborHTMLParser(html).root.traverse(include_text=False))


def best_of(fn, passes: int = 5) -> float:
    times = []
    for _ in range(passes):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    from selectolax.lexbor import LexborHTMLParser

    paths = sorted(PAGES.glob("*.htm*"))
    if not paths:
        print(f"SKIP: no pages in {PAGES} (benchmarks use ../shared/data; tests never do)")
        return
    pages = [p.read_text(encoding="utf-8", errors="replace") for p in paths]
    ratios = [parse_cost(h, 10 ** 9) / elements(h) for h in pages]
    print(f"{len(pages)} real pages, {sum(map(len, pages)) / 1e6:.1f} M characters")
    print(f"estimate / built elements: min {min(ratios):.2f}, median {statistics.median(ratios):.2f}, "
          f"max {max(ratios):.2f}; largest estimate {max(parse_cost(h, 10 ** 9) for h in pages):,}")
    guard = best_of(lambda: [over_limit(h, 1_000_000) for h in pages])
    walk = best_of(lambda: [parse_cost(h, 1_000_000) for h in pages])
    parse = best_of(lambda: [LexborHTMLParser(h) for h in pages])
    print(f"guard (tag-count bound first) {guard * 1e3:.1f} ms, the full walk {walk * 1e3:.1f} ms, lexbor parse "
          f"{parse * 1e3:.1f} ms: guard / parse {guard / parse:.2f}, walk / parse {walk / parse:.2f}")
    bomb = "<p>" + "".join(f"<b id=b{i}>" for i in range(3000)) + "x</p>" + "<p>word" * 3000
    print(f"pile-up ({len(bomb) / 1e3:.0f} KB): estimate stops at {parse_cost(bomb, 1_000_000):,} "
          f"(limit 1,000,000); a 300 x 300 one is estimated {parse_cost(_pile(300), 10 ** 9):,} "
          f"and builds {elements(_pile(300)):,}")
    unclosed = "<b" * 500_000
    print(f"1 MB of unclosed '<b': {best_of(lambda: parse_cost(unclosed, 10 ** 9), 3):.2f} s")
    _depth(pages, parse)


def _depth(pages: list[str], parse: float) -> None:
    """The nesting and attribute guard (filters/html_depth_cost.py): its time on real pages with the
    element guard, the largest real figures against its limits, and what it spares on deep nesting."""
    from selectolax.lexbor import LexborHTMLParser

    from filters.html_cost import tag_names
    from filters.html_depth_cost import ATTRIBUTE_WORK_LIMIT, SCOPE_WORK_LIMIT, attribute_work, depth_problem, \
        scope_work

    both = best_of(lambda: [(over_limit(h, 1_000_000, n := tag_names(h)), depth_problem(h, n)) for h in pages])
    print(f"both guards {both * 1e3:.1f} ms: / parse {both / parse:.2f}; largest real scope work "
          f"{max(scope_work(h, 10 ** 12) for h in pages):,} (limit {SCOPE_WORK_LIMIT:,}), attribute pairs "
          f"{max(attribute_work(h) for h in pages):,} (limit {ATTRIBUTE_WORK_LIMIT:,})")
    for n in (12_500, 25_000):
        deep = "<div>" * n
        guard = best_of(lambda: depth_problem(deep, tag_names(deep)), 3)
        print(f"{n:,} nested <div>: lexbor parse {best_of(lambda: LexborHTMLParser(deep), 1):.2f} s, "
              f"the guard {guard * 1e3:.1f} ms ({'rejects' if depth_problem(deep, tag_names(deep)) else 'passes'})")


def _pile(n: int) -> str:
    return "<p>" + "".join(f"<b id=b{i}>" for i in range(n)) + "x</p>" + "<p>word" * n


if __name__ == "__main__":
    main()
