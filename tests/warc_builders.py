"""Building WARC records for tests (warcio's writer for good ones, bytes by hand for broken ones)
and reading them back through the web reader."""

from __future__ import annotations

import io
import re

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from filters.document import Document, TextNode
from filters.sample import Rejection
from manifests.recipe import InputConfig
from pipelines.io.web_readers import file_stem, read_web_file

CONFIG = InputConfig(kind="document")
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(40)


# ---------------------------------------------------------------- building records
def one_record(make, gz: bool) -> bytes:
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
    return one_record(lambda w: w.create_warc_record(
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
    return one_record(make, gz), ids[0]


def warcinfo(gz: bool = False) -> bytes:
    return one_record(lambda w: w.create_warcinfo_record("test.warc", {"software": "pytest"}), gz)


def metadata(url: str, gz: bool = False) -> bytes:
    return one_record(lambda w: w.create_warc_record(
        url, "metadata", payload=io.BytesIO(b"fetchTimeMs: 12\r\n"), warc_content_type="application/warc-fields"), gz)


def resource(url: str, gz: bool = False) -> bytes:
    return one_record(lambda w: w.create_warc_record(
        url, "resource", payload=io.BytesIO(b"<html><body><p>a resource</p></body></html>"),
        warc_content_type="text/html"), gz)


def revisit(url: str, gz: bool = False) -> bytes:
    return one_record(lambda w: w.create_revisit_record(
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


def hand_record(uri: str, block: bytes, length: str | None = None, sep: bytes = b"\r\n") -> bytes:
    head = [b"WARC/1.0", b"WARC-Type: response", f"WARC-Target-URI: {uri}".encode(),
            f"Content-Length: {length if length is not None else len(block)}".encode("utf-8")]
    return sep.join(head) + sep + sep + block + b"\r\n\r\n"


def http_page(text: str) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<p>" + text.encode() + b"</p>"
