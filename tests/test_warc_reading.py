"""Web inputs to Documents, on WARC files built at test time (good records by warcio, damage by hand).

Every record of a file, good or damaged, must come out as exactly one Document or one Rejection with
the precise reason, and reading must go on after damage. No network: everything is a file in tmp_path.
"""

from __future__ import annotations

import gzip
import io
import random

import pytest
from warcio.statusandheaders import StatusAndHeaders

from filters.document import Document
from filters.sample import Rejection
from filters.warc import iter_warc
from manifests.recipe import InputConfig
from pipelines.io.web_readers import read_web_file

from tests.warc_builders import (
    PNG, one_record, check_accounting, hand_record, http_page, metadata, page, raw_response, read, reasons,
    request, resource, response, revisit, text, warcinfo, write,
)


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


def test_garbage_glued_to_the_next_record_loses_only_itself(tmp_path):
    # a stray log line with no newline after it: the record right behind it starts mid-line
    parts = [page("http://example.com/a", "before"), b"some stray log line",
             page("http://example.com/b", "glued"), page("http://example.com/c", "after")]
    path, offsets = write(tmp_path / "glued.warc", parts)
    entries = read(path)
    assert reasons(entries) == [None, "warc_bad_header", None, None]
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
def chunkedhttp_page(body: bytes, headers: bytes = b"Content-Type: text/html; charset=utf-8\r\n") -> bytes:
    return b"HTTP/1.1 200 OK\r\n" + headers + b"Transfer-Encoding: chunked\r\n\r\n" + body


def test_chunked_bodies(tmp_path):
    html = b"<html><body><p>chunked hello world</p></body></html>"
    pieces = (html[:20], html[20:33], html[33:])
    good = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"
    wrong_size = b"%x\r\n%s\r\n0\r\n\r\n" % (len(html) - 7, html)  # the size says 7 bytes fewer than follow
    past_end = b"%x\r\n%s\r\n" % (len(html) + 500, html)  # the chunk runs past the body's end
    not_hex = b"5\r\nhello\r\nzz\r\nworld\r\n0\r\n\r\n"
    parts = [
        raw_response("http://example.com/good", chunkedhttp_page(good)),
        raw_response("http://example.com/wrong", chunkedhttp_page(wrong_size)),
        raw_response("http://example.com/past", chunkedhttp_page(past_end)),
        raw_response("http://example.com/nothex", chunkedhttp_page(not_hex)),
        # stored de-chunked (as many crawlers do) with the header kept
        raw_response("http://example.com/dechunked", chunkedhttp_page(html)),
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
        one_record(lambda w: w.create_warc_record(
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
    path.write_bytes(posted + one_record(make, False) + page("http://example.com/ok", "a page fetched with GET"))
    out = list(read_web_file(str(path), InputConfig(kind="document")))
    assert [getattr(r, "reason", "doc") for r in out] == ["warc_post_response", "warc_not_response", "doc"]


# ---------------------------------------------------------------- found in review: each once a lost record or run
def test_odd_content_lengths_never_lose_the_rest_of_the_file(tmp_path):
    good = hand_record("http://b.example/", http_page("the page after"))
    # 10^18 and 19 nines: seeking there failed (EINVAL), and the rest of the file was one file_unreadable
    for length in ("²", "9" * 5000, "999999999999", "1000000000000000000", "9" * 19):
        path = tmp_path / "odd.warc"
        path.write_bytes(hand_record("http://a.example/", http_page("odd"), length) + good)
        out = read(path)
        assert reasons(out)[-1] is None and text(out[-1]) == "the page after", length
        assert reasons(out)[0] in ("warc_bad_header", "warc_truncated") and len(out) == 2, length
    # too short: the page was kept cut short, and its remaining bytes became a second entry
    block = http_page("a page whose last paragraph matters " * 5)
    for compress in (False, True):
        data = hand_record("http://a.example/", block, str(len(block) - 40)) + good
        path = tmp_path / ("short.warc.gz" if compress else "short.warc")
        path.write_bytes(gzip.compress(data) if compress else data)
        out = read(path)
        assert reasons(out) == ["warc_bad_header", None], compress
        assert "ends the block mid-record" in out[0].detail and text(out[1]) == "the page after"


def test_bare_lf_warc_headers_before_crlf_http_headers(tmp_path):
    path = tmp_path / "lf.warc"
    path.write_bytes(hand_record("http://a.example/", http_page("first"), sep=b"\n")
                     + hand_record("http://b.example/", http_page("second"), sep=b"\n"))
    assert [text(d) for d in read(path)] == ["first", "second"]


def test_whole_file_gzip_larger_than_memory_is_framed_record_by_record(tmp_path, monkeypatch):
    import filters.warc as warc

    monkeypatch.setattr(warc, "_IN_MEMORY", 4096)  # spill to a temporary file after 4 KiB, as after 256 MiB
    records = b"".join(hand_record(f"http://x.example/{i}", http_page(f"page {i} " + "x" * 300)) for i in range(40))
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
    path.write_bytes(bomb + gzip.compress(hand_record("http://b.example/", http_page("after the bomb"))))
    config = InputConfig(kind="document", web={"max_gzip_member_bytes": 1 << 20})
    out = read(path, config)
    assert reasons(out) == ["warc_record_too_large", None] and text(out[1]) == "after the bomb"
