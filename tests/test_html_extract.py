"""HTML -> interleaved nodes: OBELICS' DOM simplification, on hand-written pages."""

from __future__ import annotations

from filters.document import ImageNode, TextNode
from filters.html_extract import extract, largest_srcset_candidate

PAGE = """<!doctype html><html lang="en"><head><title> A  page </title>
<link rel="canonical" href="https://example.org/story"><script>var x = "<p>not text</p>";</script></head>
<body>
<nav><a href="/">Home</a> <a href="/news">News</a></nav>
<header>Site header</header>
<!-- a comment that is not content -->
<h1>The headline</h1>
<p>First <b>bold</b> and <i>italic</i> words<br>on two lines.</p>
<div style="display: none">hidden by style</div><div hidden>hidden by attribute</div>
<div aria-hidden="true">hidden from readers</div>
<img src="img/one.jpg" alt=" first   image ">
<picture><source srcset="/p/small.webp 480w, /p/large.webp 1200w"><source srcset="/p/mid.jpg 800w">
<img src="/p/fallback.jpg" alt="a picture"></picture>
<p>Second paragraph with a <a href="/x">link</a>.</p>
<form><input value="type here"><button>Send</button></form>
<iframe src="https://ads.example/"></iframe>
<footer>Copyright</footer>
<style>p { color: red }</style><noscript>enable js</noscript>
</body></html>"""


def texts(nodes):
    return [n.text for n in nodes if isinstance(n, TextNode)]


def test_dom_simplification_keeps_content_in_reading_order():
    page = extract(PAGE, "https://example.org/section/page.html")
    kinds = ["t" if isinstance(n, TextNode) else "i" for n in page.nodes]
    assert kinds == ["t", "t", "i", "i", "t"]
    assert texts(page.nodes) == ["The headline", "First bold and italic words\non two lines.",
                                 "Second paragraph with a link."]
    one, picture = [n for n in page.nodes if isinstance(n, ImageNode)]
    assert one.url == "https://example.org/section/img/one.jpg" and one.alt_text == "first image"
    assert picture.url == "https://example.org/p/large.webp" and picture.alt_text == "a picture"
    assert page.title == "A page" and page.canonical_url == "https://example.org/story" and page.lang == "en"


def test_nothing_of_the_removed_elements_leaks():
    flat = " ".join(texts(extract(PAGE, "https://example.org/").nodes))
    for gone in ("Home", "Site header", "comment", "hidden", "type here", "Send", "Copyright", "color", "enable js",
                 "not text"):
        assert gone not in flat


def test_base_href_and_lazy_and_unfetchable_sources():
    html = """<html><head><base href="https://cdn.example/assets/"></head><body>
    <img src="data:image/gif;base64,R0lGOD" data-src="lazy.jpg">
    <img src="javascript:alert(1)"><img src="ftp://x.example/a.jpg"><img>
    <img srcset="a.jpg 1x, b.jpg 2x"></body></html>"""
    urls = [n.url for n in extract(html, "https://site.example/page").nodes]
    assert urls == ["https://cdn.example/assets/lazy.jpg", "https://cdn.example/assets/b.jpg"]


def test_srcset_largest_candidate():
    assert largest_srcset_candidate("a.jpg 320w, b.jpg 1024w, c.jpg 640w") == "b.jpg"
    assert largest_srcset_candidate("a.jpg, b.jpg 2x, c.jpg 1.5x") == "b.jpg"
    assert largest_srcset_candidate("") is None


def test_malformed_markup_never_fails():
    broken = "<html><body><p>unclosed <b>bold <div>inside</p></b> trailing <img src=x.jpg<p>end &amp; &bogus; </table>"
    page = extract(broken, "https://example.org/")
    joined = " ".join(texts(page.nodes))
    assert "unclosed bold" in joined and "inside" in joined and "end &" in joined


def test_deep_nesting_is_a_loop_not_a_recursion():
    html = "<div>" * 5000 + "deep text here" + "</div>" * 5000 + "<p>after</p>"
    assert texts(extract(html, "https://example.org/").nodes) == ["deep text here", "after"]


def test_block_boundaries_split_paragraphs_inline_tags_do_not():
    html = "<body><div>one <span>two</span></div><div>three<ul><li>four</li><li>five</li></ul></div></body>"
    assert texts(extract(html, None).nodes) == ["one two", "three", "four", "five"]


def test_navigation_and_footer_containers_by_name():
    html = """<body><div id="menu">Menu entries</div><div class="nav">Nav entries</div>
    <section class="page footer">Footer text</section><div class="menu-item">kept text</div></body>"""
    assert texts(extract(html, None).nodes) == ["kept text"]


def test_page_furniture_is_dropped_by_name_but_never_the_article():
    article = "<p>" + "The article itself, long enough to be most of the page's prose. " * 5 + "</p>"
    html = f"""<body><div class="comments-area"><p>Great post!</p></div>
    <div id="related-posts"><p>You may also like these</p></div><div role="dialog"><p>We use cookies</p></div>
    <span class="sr-only">Share on Facebook</span><div class="mvp-author-box-wrap"><p>About the author</p></div>
    <div class="widget-area l-sidebar-fixed">{article}<p>Short aside.</p></div></body>"""
    kept = texts(extract(html, None).nodes)
    assert kept[0].startswith("The article itself") and "Short aside." in kept  # the wrapper holds the prose
    assert not any(t in " ".join(kept) for t in ("Great post", "also like", "cookies", "Facebook", "About the author"))


def test_srcset_parsing_follows_the_standard_and_odd_values_do_not_lose_the_page():
    cloudinary = "https://res.example/image/upload/w_400,h_300,c_fill/sample.jpg 400w, https://res.example/big.jpg 800w"
    assert largest_srcset_candidate(cloudinary) == "https://res.example/big.jpg"
    assert largest_srcset_candidate("https://res.example/w_400,h_300/a.jpg") == "https://res.example/w_400,h_300/a.jpg"
    assert largest_srcset_candidate(", , ,") is None
    assert largest_srcset_candidate("x.jpg .w, y.jpg 1.5.x, z.jpg 2x") == "z.jpg"  # bad descriptors: dropped
    assert largest_srcset_candidate(f"huge.jpg {'9' * 400}w, ok.jpg 640w") == "ok.jpg"  # it overflowed a float
    html = '<body><p>text</p><img srcset="x.jpg .w" width="²" height="99999999999999999999" src="a.jpg"></body>'
    (image,) = [n for n in extract(html, "https://example.org/").nodes if isinstance(n, ImageNode)]
    assert image.url == "https://example.org/a.jpg" and image.meta == {}


def test_pathological_attributes_stay_linear():
    import time

    started = time.perf_counter()
    extract('<body><img srcset="' + ("a" * 2000 + " ") * 1000 + '"></body>', "https://example.org/")
    nested = '<div class="sidebar">' * 5000 + "<p>" + "word " * 20000 + "</p>" + "</div>" * 5000
    assert texts(extract(nested, None).nodes)[0].startswith("word word")
    assert time.perf_counter() - started < 10  # quadratic versions took minutes


def _elements(html: str) -> int:
    from selectolax.lexbor import LexborHTMLParser

    return sum(1 for _ in LexborHTMLParser(html).root.traverse(include_text=False))


def test_the_parse_cost_estimate_follows_what_the_parser_builds():
    from filters.html_cost import parse_cost

    def pile_up(open_tags: int, paragraphs: int) -> str:  # distinct attributes: the 3-identical rule never trims
        return "<p>" + "".join(f"<b id=b{i}>" for i in range(open_tags)) + "x</p>" + "<p>word" * paragraphs

    for open_tags, paragraphs in [(50, 50), (200, 100)]:
        page = pile_up(open_tags, paragraphs)
        built = _elements(page)
        assert built > open_tags * paragraphs and 0.95 * built <= parse_cost(page, 10 ** 9) <= 1.1 * built
    plain = "<html><body>" + "<div><p>text <b>bold</b> <a href=x>link</a></p><ul><li>one<li>two</ul></div>" * 200
    assert 0.7 * _elements(plain) <= parse_cost(plain, 10 ** 9) <= 1.3 * _elements(plain)
    # sloppy but ordinary pages the parser keeps small: a new <a> ends the last, three identical
    # entries at most, <br> closes nothing, cells start afresh
    sloppy = ["<ul>" + "<li><a href=x>item" * 1500, "<p><b>Q: text" * 1500,
              "".join(f"<font color={i}>" for i in range(1000)) + "<br>x" * 1100,
              "".join(f"<b id={i}>" for i in range(200)) + "<table>" + "<tr><td>x<td>y" * 500 + "</table>"]
    for page in sloppy:
        assert _elements(page) / 2 <= parse_cost(page, 10 ** 9) <= 2 * _elements(page), page[:40]
    # the guard's cheap bound lets ordinary pages through without the walk, and walks a pile-up
    from filters.html_cost import over_limit

    assert all(over_limit(page, 1_000_000) is None for page in [plain, *sloppy])
    assert over_limit(pile_up(3000, 3000), 1_000_000) > 1_000_000
    # counting stops just past the limit: a 3000 x 3000 pile-up (9 million elements) costs no more than that
    assert 1_000 < parse_cost(pile_up(3000, 3000), 1_000) <= 1_000 + 3_001
    # tags inside script and style are text to the parser
    assert parse_cost("<script>" + "<b>" * 1000 + "</script><p>x", 10 ** 9) == 2  # the script and the p
    assert parse_cost("<script>" * 100_000, 10 ** 9) == 1  # unclosed: the rest is its text (no rescans)


def test_a_page_that_would_build_millions_of_elements_is_rejected_before_parsing():
    from pipelines.io.web_readers import document_from_html
    from filters.sample import Rejection

    bomb = "<p>" + "".join(f"<b id=b{i}>" for i in range(3000)) + "x</p>" + "<p>word" * 3000  # 120 KB
    rejected = document_from_html("k", "crawl.warc", "https://example.com/", bomb, {}, max_elements=1_000_000)
    assert isinstance(rejected, Rejection) and rejected.reason == "html_too_complex"
    assert "over 1,000,000 elements" in rejected.detail
    kept = document_from_html("k", "crawl.warc", "https://example.com/", "<p>a paragraph of text</p>", {})
    assert not isinstance(kept, Rejection)


def test_nesting_and_attributes_that_would_take_the_parser_hours_are_rejected_before_parsing():
    """300,000 nested <div> (a 1.5 MB page) kept the parser busy for hours: each block start reads
    the stack of open elements. 50,000 attributes on one tag took 14 s. Ordinary and sloppy pages,
    whose items and paragraphs the parser closes itself, count far below the limits."""
    import time

    from filters.html_depth_cost import SCOPE_WORK_LIMIT, attribute_work, scope_work
    from filters.sample import Rejection
    from pipelines.io.web_readers import document_from_html

    assert scope_work("<div>" * 1000, 10 ** 12) == 1000 * 999 // 2  # each div reads the ones above it
    assert attribute_work("<img " + " ".join(f'a{i}="x y"' for i in range(3000)) + ">") == 3000 * 2999 // 2
    assert attribute_work('<img src="a.jpg" alt="' + "word " * 5000 + '">') == 1  # a long value, two attributes
    ordinary = ["<p><a href=x>item" * 20_000, "<ul>" + "<li><a href=x>item" * 20_000 + "</ul>",
                "<dl>" + "<dt>term<dd>text" * 10_000, "<table>" + "<tr><td>x<td><div>y</div>" * 20_000,
                "<div><ul><li>a<li>b</ul></div>" * 20_000, "<a href=x><div>item</div>\n" * 12_000,
                "<!--" + "<div>" * 8_000 + "<p>" * 8_000 + "-->"]  # a new <a> ends the last; comments are text
    for page in ordinary:
        assert scope_work(page, 10 ** 12) < SCOPE_WORK_LIMIT / 100, page[:30]
    hostile = {"<div>" * 300_000: "nest so deep", "<div><a>" * 20_000: "nest so deep",
               "<div><ul><li>" * 20_000: "nest so deep", "<td><div>" * 20_000: "nest so deep",
               "<img " + " ".join(f"a{i}=1" for i in range(50_000)) + ">": "so many attributes"}
    for page, detail in hostile.items():
        started = time.perf_counter()
        rejected = document_from_html("k", "crawl.warc", "https://example.com/", page, {})
        assert isinstance(rejected, Rejection) and rejected.reason == "html_too_complex", page[:30]
        assert detail in rejected.detail and time.perf_counter() - started < 5, page[:30]


def test_declared_sizes_are_read_as_obelics_reads_them():
    from filters.html_extract import declared_size

    cases = {"60": {"width": 60}, "60px": {"width": 60}, " 60 px;": {"width": 60}, "60.7": {"width": 60},
             '"60"': {"width": 60}, "50%": {"width_percent": 50}, "12.5%": {}, "auto": {}, "full-width": {},
             "60PX": {}, "²": {}, "9" * 20: {}, "": {}}
    for value, meta in cases.items():
        assert declared_size({"width": value}) == meta, value
    assert declared_size({"width": "300", "height": "25%"}) == {"width": 300, "height_percent": 25}


def test_canonical_url_and_title_survive_a_head_the_parser_ends_early():
    """A tracking pixel's <noscript><img> in <head> ends the head (HTML5 parsing): the canonical
    link and title after it land in <body>, where they are still the page's. An <svg>'s <title> is not."""
    html = ('<html><head><meta charset="utf-8"><noscript><img src="https://px.example/p.gif"></noscript>'
            '<link rel="canonical" href="https://news.example/story"><title>The  story</title></head>'
            '<body><svg><title>share icon</title></svg><p>Text of the story.</p></body></html>')
    page = extract(html, None)
    assert (page.canonical_url, page.title) == ("https://news.example/story", "The story")
    svg_first = '<html><body><svg><title>menu</title></svg><title>Real</title><p>x</p></body></html>'
    assert extract(svg_first, None).title == "Real"
