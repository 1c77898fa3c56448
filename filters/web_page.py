"""From a WARC record to an HTML page (URL + decoded text), or the precise reason it is not one.

Only `response` records of HTTP(S) URLs, status 200, holding HTML become pages; every other record
gets a reason, so a WARC file's records are all accounted for. Decisions, in order:

  warc_not_response      WARC-Type is request, warcinfo, metadata, resource, revisit, ...
  warc_bad_target_uri    no target URI, whitespace in it, or not a parseable URL
  warc_not_http          a dns:/ftp:/... record, or a block that is not an HTTP response
  warc_post_response     the response to a POST (its request record, earlier in the file, says so)
  http_status_not_ok     anything but 200 (redirects, errors)
  warc_bad_chunking      `Transfer-Encoding: chunked` whose chunks do not parse
  http_bad_encoding      a Content-Encoding (gzip, deflate, br) that does not decode
  not_html               Content-Type (or, without one, the body) is not HTML: images, PDF, JSON
  html_empty             nothing after the headers
  html_too_large         the body (once decoded) is larger than max_html_bytes
  html_bad_charset       no charset (declared, in <meta>, or detected) decodes the body

Charset: the HTTP header's, else the HTML5 prescan of <meta charset> / http-equiv, else detection
(charset_normalizer); a declared charset that is unknown or does not decode the body falls back to
detection (OBELICS decodes the same way), and the page records which one was used.
"""

from __future__ import annotations

import codecs
import re
import zlib
from dataclasses import dataclass
from urllib.parse import urlsplit

from filters.warc import WarcEntry

HTML_TYPES = ("text/html", "application/xhtml+xml")
# Python codecs no browser decodes a page with (WHATWG's Encoding list has none of them): treated as unknown.
_NOT_WEB_ENCODINGS = frozenset({"undefined", "utf-7", "idna", "punycode", "raw-unicode-escape", "unicode-escape",
                                "mbcs", "oem", "charmap"})
_STATUS = re.compile(rb"HTTP/\d(?:\.\d)?\s+(\d{3})(?!\d)")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)
_BINARY_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"%PDF", b"RIFF", b"PK\x03\x04", b"\x1f\x8b")


@dataclass(slots=True)
class WebPage:
    url: str
    html: str
    charset: str
    charset_source: str  # "http", "meta", "detected", or "detected (declared X failed)"
    status: int = 200


@dataclass(slots=True)
class NotAPage:
    reason: str
    detail: str = ""


class HttpResponse:
    """An HTTP response block split into status, headers (lower-cased names) and raw body."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: dict[str, str], body: bytes):
        self.status, self.headers, self.body = status, headers, body


def parse_http(block: bytes) -> HttpResponse | NotAPage:
    found = _STATUS.match(block)
    if not found:
        return NotAPage("warc_not_http", f"the block starts with {block[:20]!r}, not an HTTP status line")
    blanks = [(i, n) for i, n in ((block.find(b"\r\n\r\n"), 4), (block.find(b"\n\n"), 2)) if i >= 0]
    end, sep = min(blanks) if blanks else (-1, 0)  # whichever blank line comes first ends the headers
    if end < 0:
        return NotAPage("warc_truncated", "the HTTP headers never end")
    headers: dict[str, str] = {}
    for line in block[:end].decode("latin-1").splitlines()[1:]:
        name, colon, value = line.partition(":")
        if colon:
            key = name.strip().lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    return HttpResponse(int(found.group(1)), headers, block[end + sep :])


def dechunk(body: bytes) -> bytes | NotAPage:
    """Decode chunked transfer coding. Many crawlers store the body already de-chunked but keep the
    header (warcio notes it too): a body whose first line is not a chunk size is taken as it is."""
    first = body.split(b"\n", 1)[0].strip()
    if not re.fullmatch(rb"[0-9A-Fa-f]+(;.*)?", first):
        return body
    out, pos = [], 0
    while True:
        line_end = body.find(b"\n", pos)
        if line_end < 0:
            return NotAPage("warc_bad_chunking", f"no chunk-size line at byte {pos}")
        size_text = body[pos:line_end].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            return NotAPage("warc_bad_chunking", f"chunk size {size_text[:20]!r} at byte {pos} is not hex")
        start = line_end + 1
        if size == 0:
            return b"".join(out)
        if start + size > len(body):
            return NotAPage("warc_bad_chunking", f"a {size}-byte chunk at byte {start} runs past the body end")
        out.append(body[start : start + size])
        pos = start + size
        if body[pos : pos + 2] == b"\r\n":
            pos += 2
        elif body[pos : pos + 1] == b"\n":
            pos += 1
        else:
            return NotAPage("warc_bad_chunking", f"no line end after the chunk ending at byte {pos}")


def decode_content(body: bytes, encoding: str, max_bytes: int, cut_ok: bool = False) -> bytes | NotAPage:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity", "none"):
        return body
    try:
        if encoding in ("gzip", "x-gzip", "deflate"):
            wbits = 16 + zlib.MAX_WBITS if "gzip" in encoding else zlib.MAX_WBITS
            inflater = zlib.decompressobj(wbits)
            try:
                data = inflater.decompress(body, max_bytes + 1)
            except zlib.error:
                if encoding != "deflate":
                    raise
                # Many servers send raw deflate (no zlib header) for "deflate"; browsers and urllib3
                # accept both, and these pages were rejected as http_bad_encoding.
                inflater = zlib.decompressobj(-zlib.MAX_WBITS)
                data = inflater.decompress(body, max_bytes + 1)
            if len(data) <= max_bytes and not inflater.eof and not (cut_ok and data):  # cut short, or nothing
                raise ValueError(f"the stream ends early ({len(body)} bytes in, {len(data)} out)")
        elif encoding == "br":
            data = _unbrotli(body, max_bytes + 1)
        else:
            return NotAPage("http_bad_encoding", f"unknown Content-Encoding {encoding!r}")
    except Exception as err:  # zlib.error, brotli.error: the body is damaged
        return NotAPage("http_bad_encoding", f"{encoding}: {err}")
    if len(data) > max_bytes:
        return NotAPage("html_too_large", f"{encoding} body inflates past {max_bytes} bytes")
    return data


def _unbrotli(body: bytes, limit: int) -> bytes:
    """Brotli, stopping once `limit` bytes are out: brotli.decompress inflates a 3 KB bomb to 4 GB."""
    import brotli

    decompressor = brotli.Decompressor()
    out = decompressor.process(body, output_buffer_limit=limit)
    if len(out) < limit and not decompressor.is_finished():
        raise ValueError("the brotli stream ends early")
    return out


def media_type(headers: dict[str, str]) -> tuple[str, str | None]:
    """(type/subtype, charset parameter) of Content-Type (the first, when the header is repeated)."""
    value = headers.get("content-type", "").split(",")[0]
    kind, *params = value.split(";")
    charset = None
    for param in params:
        name, _, v = param.partition("=")
        if name.strip().lower() == "charset":
            charset = v.strip().strip("\"'") or None
    return kind.strip().lower(), charset


def looks_like_html(body: bytes) -> bool:
    start = body[:1024].lstrip().lower()
    return start.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in start


_ASCII = bytes(range(128))


def decode_html(body: bytes, declared: str | None) -> WebPage | NotAPage:
    """Text of the page: declared charset (HTTP, then <meta>), else detection."""
    failed = []
    candidates = [(declared, "http")]
    meta = _META_CHARSET.search(body[:1024])  # HTML5's prescan looks at the first 1024 bytes
    if meta:
        candidates.append((meta.group(1).decode("ascii", "replace"), "meta"))
    for charset, source in candidates:
        if not charset:
            continue
        try:
            info = codecs.lookup(charset)
        except (LookupError, ValueError):  # ValueError: a NUL in the name
            failed.append(f"{charset} unknown")
            continue
        name = info.name
        # Python's codec registry also knows bytes-to-bytes and str-to-str codecs (base64, hex, zlib,
        # rot13) and "undefined": bytes.decode raises LookupError / UnicodeError for those, which
        # escaped the UnicodeDecodeError below and lost the page. Not text encodings: unknown.
        if not getattr(info, "_is_text_encoding", True) or name in _NOT_WEB_ENCODINGS:
            failed.append(f"{charset} unknown")
            continue
        if name == "utf-16" or name.startswith("utf-16"):  # HTML5: a <meta> claiming UTF-16 means UTF-8
            name = "utf-8" if source == "meta" else name
        # WHATWG Encoding: pages labelled latin-1 or ascii are decoded as windows-1252 by every
        # browser (0x92 is a curly quote there, a control character in true latin-1).
        name = "cp1252" if name in ("latin-1", "iso8859-1", "ascii") else name
        try:
            return WebPage("", body.decode(name), name, source)
        except UnicodeDecodeError as err:
            if name == "utf-8" and (text := _mostly_utf8(body)) is not None:
                return WebPage("", text, name, f"{source}, invalid bytes replaced")
            failed.append(f"{charset} fails at byte {err.start}")
        except UnicodeError as err:  # punycode raises a plain UnicodeError, which has no .start
            failed.append(f"{charset} fails ({err})")
    if not failed:
        try:  # most of the web: nothing declared, UTF-8
            return WebPage("", body.decode("utf-8"), "utf-8", "detected")
        except UnicodeDecodeError:
            if (text := _mostly_utf8(body)) is not None:
                return WebPage("", text, "utf-8", "detected, invalid bytes replaced")
    detected = _detect(body)
    source = f"detected (declared {'; '.join(failed)})" if failed else "detected"
    if detected is None:
        return NotAPage("html_bad_charset", f"no charset decodes the body ({'; '.join(failed) or 'none declared'})")
    return WebPage("", body.decode(detected, "replace"), detected, source)


def _mostly_utf8(body: bytes) -> str | None:
    """UTF-8 with a few invalid bytes (a stray byte, a sequence cut at a buffer's edge) decoded as
    browsers decode it, with U+FFFD; detection guessed cp1125 for one such French page (mojibake) or
    nothing. A page in another charset labelled UTF-8 fails on nearly every non-ASCII byte: None."""
    text = body.decode("utf-8", "replace")
    replaced = text.count("\ufffd") - body.count("\ufffd".encode())
    return text if replaced * 10 <= len(body.translate(None, _ASCII)) else None


def _detect(body: bytes) -> str | None:
    from charset_normalizer import from_bytes

    best = from_bytes(body[: 256 << 10]).best()  # detection on the first 256 KiB: enough, and bounded
    return None if best is None else codecs.lookup(best.encoding).name


def valid_target_uri(uri: str | None) -> NotAPage | None:
    if not uri:
        return NotAPage("warc_bad_target_uri", "no WARC-Target-URI")
    if any(c.isspace() for c in uri):
        return NotAPage("warc_bad_target_uri", f"whitespace in {uri[:200]!r}")
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError as err:
        return NotAPage("warc_bad_target_uri", f"{uri[:200]!r}: {err}")
    if parts.scheme.lower() not in ("http", "https"):
        return NotAPage("warc_not_http", f"{parts.scheme or 'no'} scheme: {uri[:200]!r}")
    if not parts.hostname:
        return NotAPage("warc_bad_target_uri", f"no host in {uri[:200]!r}")
    return None


def page_from_record(entry: WarcEntry, post_requests: set[str], max_html_bytes: int) -> WebPage | NotAPage:
    """The HTML page a WARC record holds, or why it holds none (see the module docstring)."""
    if entry.record_type != "response":
        return NotAPage("warc_not_response", f"WARC-Type {entry.record_type or 'missing'}")
    uri = entry.target_uri
    if problem := valid_target_uri(uri):
        return problem
    if entry.headers.get("warc-concurrent-to") in post_requests:
        return NotAPage("warc_post_response", "the response to a POST request")
    response = parse_http(entry.block or b"")
    if isinstance(response, NotAPage):
        return response
    if response.status != 200:
        return NotAPage("http_status_not_ok", f"HTTP {response.status}")
    body = response.body
    if "chunked" in response.headers.get("transfer-encoding", "").lower():
        body = dechunk(body)
        if isinstance(body, NotAPage):
            return body
    # A crawler that cut a large response marks it WARC-Truncated and stores what it received: its
    # compressed body ends early by design, and is kept as far as it goes (as an uncompressed one is).
    body = decode_content(body, response.headers.get("content-encoding", ""), max_html_bytes,
                          cut_ok="warc-truncated" in entry.headers)
    if isinstance(body, NotAPage):
        return body
    kind, charset = media_type(response.headers)
    if not body.strip():
        return NotAPage("html_empty", "no body")
    if body.lstrip()[:4].startswith(_BINARY_MAGIC) or (kind and kind not in HTML_TYPES) or (
            not kind and not looks_like_html(body)):
        return NotAPage("not_html", f"Content-Type {kind or 'missing'}")
    if len(body) > max_html_bytes:
        return NotAPage("html_too_large", f"{len(body)} bytes > max_html_bytes {max_html_bytes}")
    page = decode_html(body, charset)
    if isinstance(page, WebPage):
        page.url = uri
    return page


def post_request_id(entry: WarcEntry) -> str | None:
    """The record id of a request record for a POST (so its response can be told apart)."""
    if entry.record_type == "request" and (entry.block or b"")[:5].upper() == b"POST ":
        return entry.headers.get("warc-record-id")
    return None
