"""Web inputs to Documents, on WARC files built at test time (good records by warcio, damage by hand).

Every record of a file, good or damaged, must come out as exactly one Document or one Rejection with
the precise reason, and reading must go on after damage. No network: everything is a file in tmp_path.
"""

from __future__ import annotations

import gzip
import io
import json
import random
import re
import zlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from filters.document import Document, TextNode
from filters.sample import Rejection
from filters.warc import iter_warc
from manifests.recipe import InputConfig
from pipelines.io.web_readers import file_stem, read_web_file

CONFIG = InputConfig(kind="document")
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(40)


# ---------------------------------------------------------------- building records
def _one_record(make, gz: bool) -> bytes:
    """The bytes of one record (one gzip member when gz) that make(writer) creates."""
    out = io.BytesIO()
    writer = WARCWriter(out, gzip=gz)
    writer.write_record(make(writer))
    return out.getvalue()


def http_headers(status: str = "200 OK", content_type: str | None = "text/html; charset=utf-8",
                 extra: tuple[tuple[str, str], ...] = ()) -> StatusAndHeaders:
    headers = ([("Content-Type", content_type)] if content_type else []) + list(extra)
    return StatusAndHeaders(status, headers, protocol="HTTP/1.1")


def response(url: str, body: bytes | str, *, status: str = "200 OK",
             content_type: str | None = "text/html; charset=utf-8", extra: tuple[tuple[str, str], ...] = (),
             warc_headers: dict[str, str] | None = None, gz: bool = False) -> bytes:
    """A `response` record of an HTTP response holding body (stored exactly as given)."""
    body = body.encode("utf-8") if isinstance(body, str) else body
    return _one_record(lambda w: w.create_warc_record(
        url, "response", payload=io.BytesIO(body), http_headers=http_headers(status, content_type, extra),
        warc_headers_dict=warc_headers or {}), gz)


def page(url: str, text: str, gz: bool = False, **kwargs) -> bytes:
    """A response holding a small HTML page whose one paragraph is text."""
    return response(url, f"<html><head><title>t</title></head><body><p>{text}</p></body></html>", gz=gz, **kwargs)


def request(url: str, method: str = "GET", gz: bool = False, body: bytes = b"") -> tuple[bytes, str]:
    """A `request` record and its WARC-Record-ID."""
    ids = []

    def make(w):
        record = w.create_warc_record(url, "request", payload=io.BytesIO(body), http_headers=StatusAndHeaders(
            f"{method} /form HTTP/1.1", [("Host", "example.com")], is_http_request=True))
        ids.append(record.rec_headers.get_header("WARC-Record-ID"))
        return record
    return _one_record(make, gz), ids[0]


def warcinfo(gz: bool = False) -> bytes:
    return _one_record(lambda w: w.create_warcinfo_record("test.warc", {"software": "pytest"}), gz)


def metadata(url: str, gz: bool = False) -> bytes:
    return _one_record(lambda w: w.create_warc_record(
        url, "metadata", payload=io.BytesIO(b"fetchTimeMs: 12\r\n"), warc_content_type="application/warc-fields"), gz)


def resource(url: str, gz: bool = False) -> bytes:
    return _one_record(lambda w: w.create_warc_record(
        url, "resource", payload=io.BytesIO(b"<html><body><p>a resource</p></body></html>"),
        warc_content_type="text/html"), gz)


def revisit(url: str, gz: bool = False) -> bytes:
    return _one_record(lambda w: w.create_revisit_record(
        url, "sha1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", url, "2024-01-01T00:00:00Z", http_headers=http_headers()), gz)


def raw_record(headers: dict[str, str], block: bytes, version: str = "WARC/1.0") -> bytes:
    """A record written by hand (Content-Length is taken from headers as given, so it can lie)."""
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return f"{version}\r\n{head}\r\n".encode() + block + b"\r\n\r\n"


def raw_response(url: str, http: bytes, content_length: int | None = None) -> bytes:
    """A response record written by hand around a raw HTTP response (status line, headers, body)."""
    return raw_record({"WARC-Type": "response", "WARC-Target-URI": url,
                       "WARC-Record-ID": f"<urn:uuid:{abs(hash((url, http))):032x}>",
                       "WARC-Date": "2024-01-01T00:00:00Z", "Content-Type": "application/http; msgtype=response",
                       "Content-Length": str(len(http) if content_length is None else content_length)}, http)


def write(path, parts: list[bytes]) -> tuple[str, list[int]]:
    """Concatenate parts into path; returns the path and each part's offset."""
    offsets, pos = [], 0
    for part in parts:
        offsets.append(pos)
        pos += len(part)
    path.write_bytes(b"".join(parts))
    return str(path), offsets


# ---------------------------------------------------------------- reading
def read(path, config: InputConfig = CONFIG) -> list[Document | Rejection]:
    return list(read_web_file(str(path), config))


def text(doc: Document) -> str:
    return "\n".join(node.text for node in doc.nodes if isinstance(node, TextNode))


def reasons(entries) -> list[str | None]:
    """Per entry: None for a Document, the reason for a Rejection."""
    return [None if isinstance(e, Document) else e.reason for e in entries]


def check_accounting(path: str, entries, offsets: list[int]) -> None:
    """Rejections are read-stage document rejections; every key is stem_offset, unique, at a known offset."""
    stem = file_stem(path)
    keys = [e.key for e in entries]
    assert len(set(keys)) == len(keys), keys
    for entry in entries:
        found = re.fullmatch(rf"{re.escape(stem)}_(\d{{12}})", entry.key)
        assert found, entry.key
        assert int(found.group(1)) in offsets, (entry.key, offsets)
        if isinstance(entry, Rejection):
            assert (entry.kind, entry.stage, entry.source) == ("document", "read", path)
        else:
            assert entry.meta["warc_offset"] == int(found.group(1))


# ---------------------------------------------------------------- 1-3: framing damage and resync
def test_truncated_record_in_plain_warc_is_one_rejection_and_the_next_is_read(tmp_path):
    good = page("http://example.com/a", "first page")
    cut = page("http://example.com/b", "a page cut short " * 50)
    path, offsets = write(tmp_path / "cut.warc", [good, cut[: len(cut) // 2] + b"\r\n", page(
        "http://example.com/c", "after the cut")])
    entries = read(path)
    assert reasons(entries) == [None, "warc_truncated", None]
    assert [e.url for e in entries] == ["http://example.com/a", "http://example.com/b", "http://example.com/c"]
    assert text(entries[2]) == "after the cut"
    check_accounting(path, entries, offsets)


def test_record_cut_mid_line_still_resyncs_at_the_next_record(tmp_path):
    # A writer that died mid-record and a later one appending to the same file: the next record's
    # WARC/1.0 line starts right after the cut bytes, not at the start of a line.
    cut = page("http://example.com/b", "a page cut short " * 50)
    path, offsets = write(tmp_path / "midline.warc", [cut[: len(cut) - 100], page("http://example.com/c", "after")])
    entries = read(path)
    assert reasons(entries) == ["warc_truncated", None]
    assert text(entries[1]) == "after"
    check_accounting(path, entries, offsets)


def test_truncated_last_record_of_plain_warc(tmp_path):
    last = page("http://example.com/b", "the end " * 40)
    path, offsets = write(tmp_path / "end.warc", [page("http://example.com/a", "kept"), last[:-120]])
    entries = read(path)
    assert reasons(entries) == [None, "warc_truncated"]
    check_accounting(path, entries, offsets)


def test_truncated_gzip_member_at_the_end(tmp_path):
    members = [page(f"http://example.com/{i}", f"page {i}", gz=True) for i in range(3)]
    last = page("http://example.com/last", "x" * 2000, gz=True)
    path, offsets = write(tmp_path / "cut.warc.gz", members + [last[: len(last) // 2]])
    entries = read(path)
    assert reasons(entries) == [None, None, None, "warc_truncated"]
    assert [text(d) for d in entries[:3]] == ["page 0", "page 1", "page 2"]
    check_accounting(path, entries, offsets)


def test_corrupt_gzip_member_between_good_ones_resyncs_at_the_next_member(tmp_path):
    noise = "".join(random.Random(0).choice("abcdefghijklmnopqrstuvwxyz ") for _ in range(3000))
    bad = bytearray(page("http://example.com/bad", noise, gz=True))
    middle = len(bad) // 2
    bad[middle : middle + 40] = b"\x00" * 40
    parts = [page("http://example.com/a", "before", gz=True), bytes(bad),
             page("http://example.com/c", "after", gz=True)]
    path, offsets = write(tmp_path / "corrupt.warc.gz", parts)
    entries = read(path)
    assert reasons(entries) == [None, "warc_bad_gzip", None]
    assert [text(entries[0]), text(entries[2])] == ["before", "after"]
    check_accounting(path, entries, offsets)

    # iter_warc says where it skipped to: exactly the next member
    with open(path, "rb") as f:
        raw = list(iter_warc(f))
    assert [e.offset for e in raw] == offsets
    assert f"bytes {offsets[1]}..{offsets[2]}" in raw[1].detail


def test_garbage_between_gzip_members_is_one_rejection(tmp_path):
    garbage = b"this is not gzip \x00\xff" * 20 + b"\x1f\x8b\x08 fake magic inside the garbage" + b"\x00" * 30
    parts = [page("http://example.com/a", "before", gz=True), garbage, page("http://example.com/c", "after", gz=True),
             page("http://example.com/d", "last", gz=True)]
    path, offsets = write(tmp_path / "garbage.warc.gz", parts)
    entries = read(path)
    assert reasons(entries) == [None, "warc_bad_gzip", None, None]
    assert [text(entries[i]) for i in (0, 2, 3)] == ["before", "after", "last"]
    check_accounting(path, entries, offsets)


def test_garbage_between_plain_records_is_one_bad_header(tmp_path):
    parts = [page("http://example.com/a", "before"), b"some junk\r\nmore junk\r\n",
             page("http://example.com/c", "after")]
    path, offsets = write(tmp_path / "junk.warc", parts)
    entries = read(path)
    assert reasons(entries) == [None, "warc_bad_header", None]
    check_accounting(path, entries, offsets)


def test_whole_file_gzip_warc_gives_unique_keys(tmp_path):
    # `gzip file.warc`: one member holding every record. They share the member's offset, but each
    # record must still have its own key.
    plain = b"".join(page(f"http://example.com/{i}", f"page {i}") for i in range(3))
    path = tmp_path / "whole.warc.gz"
    path.write_bytes(gzip.compress(plain))
    entries = read(path)
    assert reasons(entries) == [None, None, None]
    assert [text(d) for d in entries] == ["page 0", "page 1", "page 2"]
    assert [e.key for e in entries] == ["whole_000000000000", "whole_000000000000_1", "whole_000000000000_2"]
    assert {e.meta["warc_offset"] for e in entries} == {0}  # the member's offset, as CDX would give it


# ---------------------------------------------------------------- 4: chunked transfer coding
def chunked_http(body: bytes, headers: bytes = b"Content-Type: text/html; charset=utf-8\r\n") -> bytes:
    return b"HTTP/1.1 200 OK\r\n" + headers + b"Transfer-Encoding: chunked\r\n\r\n" + body


def test_chunked_bodies(tmp_path):
    html = b"<html><body><p>chunked hello world</p></body></html>"
    pieces = (html[:20], html[20:33], html[33:])
    good = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"
    wrong_size = b"%x\r\n%s\r\n0\r\n\r\n" % (len(html) - 7, html)  # the size says 7 bytes fewer than follow
    past_end = b"%x\r\n%s\r\n" % (len(html) + 500, html)  # the chunk runs past the body's end
    not_hex = b"5\r\nhello\r\nzz\r\nworld\r\n0\r\n\r\n"
    parts = [
        raw_response("http://example.com/good", chunked_http(good)),
        raw_response("http://example.com/wrong", chunked_http(wrong_size)),
        raw_response("http://example.com/past", chunked_http(past_end)),
        raw_response("http://example.com/nothex", chunked_http(not_hex)),
        # stored de-chunked (as many crawlers do) with the header kept
        raw_response("http://example.com/dechunked", chunked_http(html)),
        # and the same through warcio
        response("http://example.com/warcio", good, extra=(("Transfer-Encoding", "chunked"),)),
    ]
    path, offsets = write(tmp_path / "chunks.warc", parts)
    entries = read(path)
    assert reasons(entries) == [None, "warc_bad_chunking", "warc_bad_chunking", "warc_bad_chunking", None, None]
    assert text(entries[0]) == text(entries[4]) == text(entries[5]) == "chunked hello world"
    check_accounting(path, entries, offsets)


# ---------------------------------------------------------------- 5-6: records that are not pages
def test_records_that_are_not_html_pages_get_their_reason(tmp_path):
    post, post_id = request("http://example.com/form", "POST", body=b"q=1")
    get, get_id = request("http://example.com/search", "GET")
    parts = [
        warcinfo(),
        get,
        page("http://example.com/search", "a GET response", warc_headers={"WARC-Concurrent-To": get_id}),
        metadata("http://example.com/search"),
        resource("http://example.com/res"),
        revisit("http://example.com/search"),
        post,
        page("http://example.com/form", "the result of a POST", warc_headers={"WARC-Concurrent-To": post_id}),
        _one_record(lambda w: w.create_warc_record(
            "dns:example.com", "response", payload=io.BytesIO(b"20240101000000\nexample.com. 300 IN A 10.0.0.1\n"),
            warc_content_type="text/dns"), False),
        page("http://example.com/a b", "a space in the URL"),
        page("http://example.com/missing", "gone", status="404 Not Found"),
        response("http://example.com/moved", b"", status="301 Moved Permanently", content_type=None,
                 extra=(("Location", "http://example.com/new"),)),
        response("http://example.com/logo.png", PNG, content_type="image/png"),
        response("http://example.com/paper.pdf", b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n", content_type="application/pdf"),
        response("http://example.com/api", b'{"html": "<p>no</p>"}', content_type="application/json"),
        response("http://example.com/untyped.png", PNG, content_type=None),  # no Content-Type: sniffed
        response("http://example.com/lying.png", PNG, content_type="text/html"),  # says HTML, is a PNG
    ]
    path, offsets = write(tmp_path / "kinds.warc", parts)
    entries = read(path)
    assert reasons(entries) == [
        "warc_not_response", "warc_not_response", None, "warc_not_response", "warc_not_response",
        "warc_not_response", "warc_not_response", "warc_post_response", "warc_not_http", "warc_bad_target_uri",
        "http_status_not_ok", "http_status_not_ok", "not_html", "not_html", "not_html", "not_html", "not_html"]
    assert text(entries[2]) == "a GET response"
    assert entries[10].detail == "HTTP 404" and entries[11].detail == "HTTP 301"
    check_accounting(path, entries, offsets)


def test_a_page_that_breaks_extraction_is_a_document_rejection(tmp_path):
    # <base href> with a broken IPv6 host makes urljoin raise inside the HTML walk: the guard turns it
    # into that record's rejection, which must count as a document (not a sample) rejection.
    broken = '<html><head><base href="http://[oops/"></head><body><p>x</p></body></html>'
    path, offsets = write(tmp_path / "guard.warc", [response("http://example.com/b", broken),
                                                    page("http://example.com/c", "next")])
    first, second = entries = read(path)
    assert isinstance(second, Document) and text(second) == "next"
    if isinstance(first, Rejection):
        assert first.reason.startswith("error_")
    else:
        assert text(first) == "x"
    check_accounting(path, entries, offsets)


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
    ]
    path, offsets = write(tmp_path / "charsets.warc", parts)
    latin1, lying, sjis, nonsense, undeclared = entries = read(path)
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
    parts = [
        response("http://example.com/gz", compressed, extra=(("Content-Encoding", "gzip"),)),
        response("http://example.com/bad", bytes(corrupt), extra=(("Content-Encoding", "gzip"),)),
        response("http://example.com/zlib", deflate_zlib, extra=(("Content-Encoding", "deflate"),)),
        response("http://example.com/rawdeflate", deflate_raw, extra=(("Content-Encoding", "deflate"),)),
        response("http://example.com/notgz", html, extra=(("Content-Encoding", "gzip"),)),
        response("http://example.com/weird", html, extra=(("Content-Encoding", "x-unknown"),)),
    ]
    path, offsets = write(tmp_path / "encoded.warc", parts)
    entries = read(path)
    assert reasons(entries) == [None, "http_bad_encoding", None, None, "http_bad_encoding", "http_bad_encoding"]
    assert text(entries[0]) == text(entries[2]) == text(entries[3]) == "compressed page"
    check_accounting(path, entries, offsets)


# ---------------------------------------------------------------- 9: accounting over a mixed file
@pytest.mark.parametrize("gz", [False, True])
def test_every_record_and_damaged_region_is_one_entry(tmp_path, gz):
    post, post_id = request("http://example.com/form", "POST", gz=gz)
    records = [
        warcinfo(gz=gz),
        page("http://example.com/1", "one", gz=gz),
        metadata("http://example.com/1", gz=gz),
        post,
        page("http://example.com/form", "posted", gz=gz, warc_headers={"WARC-Concurrent-To": post_id}),
        page("http://example.com/404", "nope", status="404 Not Found", gz=gz),
        response("http://example.com/img", PNG, content_type="image/png", gz=gz),
        page("http://example.com/2", "two", gz=gz),
    ]
    damaged = b"\x00garbage that is neither gzip nor WARC\r\n" * 3
    last = page("http://example.com/3", "three " * 300, gz=gz)
    parts = records[:5] + [damaged] + records[5:] + [last[: len(last) - 200]]
    path, offsets = write(tmp_path / ("mixed.warc.gz" if gz else "mixed.warc"), parts)
    entries = read(path)
    assert len(entries) == len(records) + 1 + 1  # the records, the damaged region, the cut last record
    assert reasons(entries) == [
        "warc_not_response", None, "warc_not_response", "warc_not_response", "warc_post_response",
        "warc_bad_gzip" if gz else "warc_bad_header", "http_status_not_ok", "not_html", None, "warc_truncated"]
    assert [text(entries[1]), text(entries[8])] == ["one", "two"]
    check_accounting(path, entries, offsets)
    assert [int(e.key.rsplit("_", 1)[1]) for e in entries] == offsets  # one entry per part, in file order


def test_iter_warc_entries_carry_headers_and_blocks(tmp_path):
    parts = [warcinfo(), page("http://example.com/a", "x")]
    path, offsets = write(tmp_path / "plain.warc", parts)
    with open(path, "rb") as f:
        entries = list(iter_warc(f))
    assert [e.offset for e in entries] == offsets
    assert [e.record_type for e in entries] == ["warcinfo", "response"]
    assert entries[1].target_uri == "http://example.com/a"
    assert entries[1].block.startswith(b"HTTP/1.1 200 OK\r\n")
    assert entries[1].block.endswith(b"<p>x</p></body></html>")
    assert all(e.reason is None for e in entries)


def test_unsupported_and_unreadable_files(tmp_path):
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    (entry,) = read(other)
    assert (entry.reason, entry.kind, entry.stage) == ("file_unsupported", "document", "read")
    empty = tmp_path / "empty.warc"
    empty.write_bytes(b"")
    assert read(empty) == []


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


def test_post_response_followed_by_its_request(tmp_path):
    """warcprox writes the response first, then its request pointing back (WARC-Concurrent-To)."""
    posted = page("http://example.com/form", "the result of a POST")
    response_id = next(line.split(b": ", 1)[1].strip().decode() for line in posted.split(b"\r\n")
                       if line.startswith(b"WARC-Record-ID"))

    def make(w):
        return w.create_warc_record("http://example.com/form", "request", payload=io.BytesIO(b"q=1"),
                                    http_headers=StatusAndHeaders("POST /form HTTP/1.1", [("Host", "example.com")],
                                                                  is_http_request=True),
                                    warc_headers_dict={"WARC-Concurrent-To": response_id})
    path = tmp_path / "post_after.warc"
    path.write_bytes(posted + _one_record(make, False) + page("http://example.com/ok", "a page fetched with GET"))
    out = list(read_web_file(str(path), InputConfig(kind="document")))
    assert [getattr(r, "reason", "doc") for r in out] == ["warc_post_response", "warc_not_response", "doc"]


# ---------------------------------------------------------------- found in review: each once a lost record or run
def _raw_record(uri: str, block: bytes, length: str | None = None, sep: bytes = b"\r\n") -> bytes:
    head = [b"WARC/1.0", b"WARC-Type: response", f"WARC-Target-URI: {uri}".encode(),
            f"Content-Length: {length if length is not None else len(block)}".encode("utf-8")]
    return sep.join(head) + sep + sep + block + b"\r\n\r\n"


def _http(text: str) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<p>" + text.encode() + b"</p>"


def test_odd_content_lengths_never_lose_the_rest_of_the_file(tmp_path):
    good = _raw_record("http://b.example/", _http("the page after"))
    for length in ("²", "9" * 5000, "999999999999"):
        path = tmp_path / "odd.warc"
        path.write_bytes(_raw_record("http://a.example/", _http("odd"), length) + good)
        out = read(path)
        assert reasons(out)[-1] is None and text(out[-1]) == "the page after", length
        assert reasons(out)[0] in ("warc_bad_header", "warc_truncated")


def test_bare_lf_warc_headers_before_crlf_http_headers(tmp_path):
    path = tmp_path / "lf.warc"
    path.write_bytes(_raw_record("http://a.example/", _http("first"), sep=b"\n")
                     + _raw_record("http://b.example/", _http("second"), sep=b"\n"))
    assert [text(d) for d in read(path)] == ["first", "second"]


def test_whole_file_gzip_larger_than_memory_is_framed_record_by_record(tmp_path, monkeypatch):
    import filters.warc as warc

    monkeypatch.setattr(warc, "_IN_MEMORY", 4096)  # spill to a temporary file after 4 KiB, as after 256 MiB
    records = b"".join(_raw_record(f"http://x.example/{i}", _http(f"page {i} " + "x" * 300)) for i in range(40))
    path = tmp_path / "whole.warc.gz"
    path.write_bytes(gzip.compress(records))
    out = read(path)
    assert len(out) == 40 and reasons(out) == [None] * 40 and len({d.key for d in out}) == 40
    cut = tmp_path / "whole-cut.warc.gz"
    cut.write_bytes(path.read_bytes()[: len(path.read_bytes()) * 2 // 3])
    out = read(cut)
    assert reasons(out)[:10] == [None] * 10 and reasons(out)[-1] == "warc_truncated"


def test_a_gzip_member_past_the_member_limit_is_one_rejection_and_reading_goes_on(tmp_path):
    bomb = gzip.compress(b"WARC/1.0\r\n" + b"\0" * (4 << 20))
    path = tmp_path / "bomb.warc.gz"
    path.write_bytes(bomb + gzip.compress(_raw_record("http://b.example/", _http("after the bomb"))))
    config = InputConfig(kind="document", web={"max_gzip_member_bytes": 1 << 20})
    out = read(path, config)
    assert reasons(out) == ["warc_record_too_large", None] and text(out[1]) == "after the bomb"


def test_brotli_bomb_is_refused_without_inflating_it(tmp_path):
    import brotli

    body = brotli.compress(b"\0" * (64 << 20), quality=5)
    path = tmp_path / "br.warc"
    path.write_bytes(_raw_record("http://a.example/", b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
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
