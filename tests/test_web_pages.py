"""Web pages from WARC records and saved files: charsets, content codings, size and depth, saved
.html pages and tables of url + html, hostile rows (built at test time; no network)."""

from __future__ import annotations

import gzip
import json
import zlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from filters.document import Document
from filters.sample import Rejection
from manifests.recipe import InputConfig
from tests.warc_builders import (
    check_accounting, hand_record, raw_response, read, reasons, response, text, write,
)


# ---------------------------------------------------------------- 7: charsets
def html_bytes(body_text: str, encoding: str, head: str = "") -> bytes:
    return f"<html><head>{head}</head><body><p>{body_text}</p></body></html>".encode(encoding)


def test_charsets(tmp_path):
    french = "Le café était très agréable à Noël, près de la fenêtre où l’on voit la forêt et les élèves."
    japanese = "日本語のテキストです。こんにちは、世界。今日はいい天気ですね。"
    parts = [
        response("http://example.com/latin1", html_bytes("café crème", "latin-1"),
                 content_type="text/html; charset=iso-8859-1"),
        response("http://example.com/lying-utf8", html_bytes(french, "cp1252"),
                 content_type="text/html; charset=utf-8"),
        response("http://example.com/sjis", html_bytes(japanese, "shift_jis", '<meta charset="shift_jis">'),
                 content_type="text/html"),
        response("http://example.com/nonsense", html_bytes(french, "utf-8"),
                 content_type="text/html; charset=x-nonsense"),
        response("http://example.com/none", html_bytes(french, "utf-8"), content_type="text/html"),
        # one stray byte in a UTF-8 page: dropped (nothing detected) or mojibake (cp1125) before
        response("http://example.com/stray", html_bytes(french, "utf-8").replace("Noël".encode(), b"No\xff" + "ël".encode()),
                 content_type="text/html; charset=utf-8"),
        response("http://example.com/stray-none", html_bytes(french, "utf-8").replace(b"</p>", b"\x81</p>"),
                 content_type="text/html"),
    ]
    path, offsets = write(tmp_path / "charsets.warc", parts)
    latin1, lying, sjis, nonsense, undeclared, stray, stray_none = entries = read(path)
    assert all(isinstance(d, Document) for d in entries)
    assert "café crème" in [n.text for n in latin1.nodes]
    assert (latin1.meta["charset"], latin1.meta["charset_source"]) == ("cp1252", "http")  # WHATWG: latin-1 labels mean windows-1252
    assert lying.meta["charset_source"].startswith("detected (declared utf-8 fails at byte")
    # Detection on a short text is a guess between sibling code pages (charset_normalizer says cp1250
    # for this sentence): check only what they share.
    assert lying.meta["charset"].startswith("cp125") and "Le café était" in text(lying)
    assert (sjis.meta["charset"], sjis.meta["charset_source"]) == ("shift_jis", "meta")
    assert text(sjis) == japanese
    assert nonsense.meta["charset_source"].startswith("detected (declared x-nonsense unknown")
    assert text(nonsense) == french
    assert (undeclared.meta["charset"], undeclared.meta["charset_source"]) == ("utf-8", "detected")
    assert text(undeclared) == french
    assert (stray.meta["charset"], stray.meta["charset_source"]) == ("utf-8", "http, invalid bytes replaced")
    assert text(stray) == french.replace("Noël", "No\ufffdël")  # as a browser shows it
    assert (stray_none.meta["charset"], stray_none.meta["charset_source"]) == ("utf-8", "detected, invalid bytes replaced")
    assert text(stray_none) == french + "\ufffd"
    check_accounting(path, entries, offsets)


@pytest.mark.parametrize("charset", ["base64", "hex", "rot13", "undefined", "zlib", "utf\x00", "punycode"])
def test_a_declared_charset_that_is_not_a_text_encoding_falls_back(tmp_path, charset):
    # Python knows these names (codecs.lookup finds them) but they do not decode bytes to text: a
    # hostile or broken Content-Type must not lose the page, let alone give a crash rejection.
    body = html_bytes("un café noir", "utf-8")
    http = (b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=" + charset.encode("latin-1") + b"\r\n\r\n" + body)
    path, offsets = write(tmp_path / "codec.warc", [raw_response("http://example.com/x", http),
                                                    response("http://example.com/y", html_bytes(
                                                        "deux", "utf-8", f'<meta charset="{charset}">'),
                                                        content_type="text/html")])
    entries = read(path)
    assert reasons(entries) == [None, None], [getattr(e, "detail", "") for e in entries]
    assert entries[0].meta["charset_source"].startswith("detected (declared")
    assert text(entries[0]) == "un café noir"
    assert text(entries[1]) == "deux"
    check_accounting(path, entries, offsets)


# ---------------------------------------------------------------- 8: size, depth, content coding
def test_large_and_deeply_nested_pages(tmp_path):
    paragraph = "word " * 2000  # 10 kB
    big = "<html><body>" + "".join(f"<p>{i} {paragraph}</p>" for i in range(1000)) + "</body></html>"
    assert len(big) > 10_000_000
    deep = "<html><body>" + "<div>" * 5000 + "deep text" + "</div>" * 5000 + "</body></html>"
    path, offsets = write(tmp_path / "big.warc", [response("http://example.com/big", big),
                                                  response("http://example.com/deep", deep)])
    entries = read(path)
    assert reasons(entries) == [None, None]
    big_doc, deep_doc = entries
    assert len(big_doc.nodes) == 1000
    assert big_doc.nodes[999].text == f"999 {paragraph}".strip()
    assert [n.text for n in deep_doc.nodes] == ["deep text"]
    check_accounting(path, entries, offsets)


def test_content_encoding(tmp_path):
    html = b"<html><body><p>compressed page</p></body></html>"
    compressed = gzip.compress(html)
    corrupt = bytearray(gzip.compress(html + b"<p>" + bytes(range(256)) * 8 + b"</p>"))
    corrupt[len(corrupt) // 2 : len(corrupt) // 2 + 16] = b"\xff" * 16
    deflate_zlib = zlib.compress(html)
    deflate_raw = zlib.compress(html)[2:-4]  # what many servers send for "deflate": no zlib wrapper
    long_page = gzip.compress(b"".join(f"<p>paragraph {i}</p>".encode() for i in range(2000)))
    cut = long_page[: len(long_page) // 2]
    parts = [
        response("http://example.com/gz", compressed, extra=(("Content-Encoding", "gzip"),)),
        response("http://example.com/bad", bytes(corrupt), extra=(("Content-Encoding", "gzip"),)),
        response("http://example.com/zlib", deflate_zlib, extra=(("Content-Encoding", "deflate"),)),
        response("http://example.com/rawdeflate", deflate_raw, extra=(("Content-Encoding", "deflate"),)),
        response("http://example.com/notgz", html, extra=(("Content-Encoding", "gzip"),)),
        response("http://example.com/weird", html, extra=(("Content-Encoding", "x-unknown"),)),
        # cut short: it inflated to half a page, kept as if whole; a header and garbage: to nothing
        response("http://example.com/cut", cut, extra=(("Content-Encoding", "gzip"),)),
        response("http://example.com/nothing", b"\x1f\x8b\x08\x00garbage", extra=(("Content-Encoding", "gzip"),)),
    ]
    path, offsets = write(tmp_path / "encoded.warc", parts)
    entries = read(path)
    assert reasons(entries) == [None, "http_bad_encoding", None, None, "http_bad_encoding", "http_bad_encoding",
                                "http_bad_encoding", "http_bad_encoding"]
    assert "the stream ends early" in entries[6].detail
    assert text(entries[0]) == text(entries[2]) == text(entries[3]) == "compressed page"
    check_accounting(path, entries, offsets)


# ---------------------------------------------------------------- 10: saved pages and tables
def test_saved_html_files_get_their_url(tmp_path):
    canonical = tmp_path / "canon.html"
    canonical.write_text('<html><head><link rel="canonical" href="https://example.com/canon">'
                         '<meta property="og:url" content="https://example.com/og"></head>'
                         '<body><p>canonical page</p><img src="pic.jpg"></body></html>')
    og = tmp_path / "og.htm"
    og.write_text('<html><head><meta property="og:url" content="https://example.com/og"></head>'
                  "<body><p>og page</p></body></html>")
    bare = tmp_path / "bare page.html"
    bare.write_bytes("<html><body><p>sans URL, déjà vu</p></body></html>".encode("utf-8"))
    (c,), (o,), (b,) = read(canonical), read(og), read(bare)
    assert (c.url, c.meta["url_source"], c.key.rsplit("_", 1)[0]) == ("https://example.com/canon", "canonical", "canon")
    assert c.nodes[1].url == "https://example.com/pic.jpg"  # resolved against the canonical URL
    assert (o.url, o.meta["url_source"]) == ("https://example.com/og", "canonical")  # og:url stands in for it
    assert (b.url, b.meta["url_source"], b.key.rsplit("_", 1)[0]) == (str(bare), "file", "bare_page")
    # saved pages are often all index.html: the key carries a hash of the whole path
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    for site in ("a", "b"):
        (tmp_path / site / "index.html").write_text("<p>home</p>")
    assert read(tmp_path / "a" / "index.html")[0].key != read(tmp_path / "b" / "index.html")[0].key
    assert text(b) == "sans URL, déjà vu"


def test_tables_of_pages(tmp_path):
    rows = [
        {"url": "https://example.com/1", "html": "<html><body><p>first row</p></body></html>"},
        {"url": "not a url", "html": "<p>x</p>"},
        {"url": "ftp://example.com/file", "html": "<p>x</p>"},
        {"url": "https://example.com/4", "html": None},
        {"url": "https://example.com/5", "html": "<html><body><p>keyed row</p></body></html>", "key": "mine"},
    ]
    jsonl = tmp_path / "pages.jsonl"
    lines = [json.dumps(r) for r in rows[:2]] + ["{not json", ""] + [json.dumps(r) for r in rows[2:]] + ["[1, 2]"]
    jsonl.write_text("\n".join(lines) + "\n")
    entries = read(jsonl)
    assert reasons(entries) == [None, "page_bad_url", "row_invalid_json", "page_bad_url", "html_missing", None,
                                "row_invalid_json"]
    assert [e.key for e in entries] == [f"pages_{i:09d}" for i in range(5)] + ["mine", "pages_000000006"]
    assert text(entries[0]) == "first row" and entries[0].url == "https://example.com/1"
    assert text(entries[5]) == "keyed row"
    assert all((r.kind, r.stage) == ("document", "read") for r in entries if isinstance(r, Rejection))

    parquet = tmp_path / "pages.parquet"
    pq.write_table(pa.table({
        "url": ["https://example.com/p", "https://example.com/q", "bad url"],
        "html": [b"<html><body><p>parquet bytes</p></body></html>",
                 "<html><head><meta charset='latin-1'></head><body><p>caf\xe9</p></body></html>".encode("latin-1"),
                 b"<p>x</p>"],
    }), parquet)
    entries = read(parquet)
    assert reasons(entries) == [None, None, "page_bad_url"]
    assert [text(entries[0]), text(entries[1])] == ["parquet bytes", "café"]
    assert entries[1].meta["charset_source"] == "meta"


def test_table_row_with_lone_surrogates_is_a_document_rejection(tmp_path):
    # JSON can spell strings that are not valid Unicode text ("\ud800"); whatever becomes of such a
    # row, it is one entry and, if rejected, a document rejection.
    path = tmp_path / "surrogates.jsonl"
    path.write_text('{"url": "https://example.com/s", "html": "<p>a \\ud800 b</p>"}\n'
                    '{"url": "https://example.com/t", "html": "<p>fine</p>"}\n')
    entries = read(path)
    assert len(entries) == 2
    assert isinstance(entries[1], Document) and text(entries[1]) == "fine"
    first = entries[0]
    if isinstance(first, Rejection):
        assert (first.kind, first.stage) == ("document", "read")
    else:
        text(first).encode("utf-8")  # a kept document holds text that can be written out


def test_brotli_bomb_is_refused_without_inflating_it(tmp_path):
    import brotli

    body = brotli.compress(b"\0" * (64 << 20), quality=5)
    path = tmp_path / "br.warc"
    path.write_bytes(hand_record("http://a.example/", b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
                                 b"Content-Encoding: br\r\n\r\n" + body))
    assert reasons(read(path, InputConfig(kind="document", web={"max_html_bytes": 1 << 20}))) == ["html_too_large"]


def test_hostile_table_rows_are_each_one_rejection(tmp_path):
    path = tmp_path / "rows.jsonl"
    lines = [json.dumps({"url": "http://a.example/\ud800", "html": "<p>x</p>"}),
             json.dumps({"key": "../../evil", "url": "http://a.example/", "html": "<p>x</p>"}),
             json.dumps({"key": "k\udc00", "url": "http://a.example/", "html": "<p>x</p>"}),
             "[" * 100_000,
             json.dumps({"url": "http://b.example/", "html": "<p>the good row</p>"})]
    path.write_text("\n".join(lines) + "\n")
    out = read(path)
    assert reasons(out) == ["metadata_invalid_unicode", "key_invalid", "key_invalid", "row_invalid_json", None]
    for rejection in out[:4]:
        rejection.to_bytes()  # every one can travel through the coder (a lone surrogate could not)


def test_a_crawled_urls_password_is_never_written():
    """WARC-Target-URI http://user:secret@... reached the shard, its parquet, the report and the rejection table."""
    from filters.sample import Rejection as Row
    from pipelines.io.web_readers import document_from_html

    kept = document_from_html("k", "crawl.warc", "http://user:secret@a.example/p",
                              "<p>a paragraph of text</p><img src=pic.jpg>", {})
    assert kept.url == kept.meta["url"] == "http://<redacted>@a.example/p"
    assert kept.nodes[1].url == "http://a.example/pic.jpg"  # resolved without them, so it can be fetched
    assert "secret" not in Row("k", "crawl.warc", "http://user:secret@a.example/p", "read", "x").url
