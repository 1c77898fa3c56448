"""Web inputs to Documents: WARC files, saved HTML files, and tables of (url, html).

Plain Python (no Beam), like readers.py. One WARC record is one input record: it becomes a Document
or a Rejection of stage `read` with the precise reason (filters/web_page.py, filters/warc.py), and a
damaged region of a file is one rejection after which reading goes on. Nothing in a page executes;
HTML is parsed by lexbor into a tree and walked (filters/html_extract.py).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

import fsspec

from filters.document import Document
from filters.html_cost import over_limit, tag_names
from filters.html_depth_cost import depth_problem
from filters.html_extract import extract, page_domain
from filters.record_checks import metadata_problem
from filters.sample import Rejection
from filters.url_safety import redact_credentials, without_credentials
from filters.warc import iter_warc
from filters.web_page import NotAPage, decode_html, post_request_id, page_from_record, valid_target_uri
from manifests.shard_format import KEY_RULE_TEXT, valid_key
from pipelines.io.readers import STAGE, guarded_record

if TYPE_CHECKING:
    from manifests.recipe import InputConfig

KIND = Document.KIND
WEB_SUFFIXES = (".warc", ".warc.gz", ".html", ".htm", ".parquet", ".jsonl", ".jsonl.gz")
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]+")


def read_web_file(path: str, config: InputConfig) -> Iterator[Document | Rejection]:
    """Every record of one web input file, as Documents or Rejections (never raises for bad data)."""
    name = PurePosixPath(path).name.lower()
    if name.endswith((".warc", ".warc.gz")):
        records = read_warc(path, config)
    elif name.endswith((".html", ".htm")):
        records = iter([guarded_record(path, html_file_key(path), read_html_file, path, config, kind=KIND)])
    elif name.endswith((".parquet", ".jsonl", ".jsonl.gz")):
        records = read_page_table(path, config)
    else:
        yield _file_rejection(path, "file_unsupported", f"expected one of {', '.join(WEB_SUFFIXES)}")
        return
    try:
        yield from records
    except Exception as err:  # the file itself (not a record) could not be read on
        yield _file_rejection(path, "file_unreadable", f"{type(err).__name__}: {err}")


def _file_rejection(path: str, reason: str, detail: str) -> Rejection:
    return Rejection(f"{file_stem(path)}#unreadable", path, None, STAGE, reason, detail[:2000], KIND)


def html_file_key(path: str) -> str:
    """Saved pages are often all called index.html: the stem plus a short hash of the whole path."""
    return f"{file_stem(path)}_{hashlib.sha1(path.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"


def file_stem(path: str) -> str:
    """A key-safe stem of the file name: CC-MAIN-...-00001.warc.gz -> CC-MAIN-...-00001."""
    name = PurePosixPath(path).name
    for suffix in (".gz", ".warc", ".html", ".htm", ".parquet", ".jsonl"):
        name = name.removesuffix(suffix)
    stem = _UNSAFE.sub("_", name).strip("_") or "page"
    if len(stem) > 150:  # keys are STEM_OFFSET and must fit a file name; a hash keeps long stems apart
        stem = f"{stem[:133]}-{hashlib.sha256(stem.encode()).hexdigest()[:16]}"
    return stem


# ---------------------------------------------------------------- WARC
def read_warc(path: str, config: InputConfig) -> Iterator[Document | Rejection]:
    stem = file_stem(path)
    post_requests: set[str] = set()  # record ids of POST requests seen so far in this file
    held = None  # the last outcome, held back one record: its POST request may come right after it
    try:
        with fsspec.open(path, "rb") as raw:
            for entry in iter_warc(raw, config.web.max_record_bytes, config.web.max_gzip_member_bytes):
                key = f"{stem}_{entry.offset:012d}"
                if entry.member_index:  # a later record of a multi-record gzip member shares its offset
                    key += f"_{entry.member_index}"
                url = entry.target_uri
                if entry.reason is not None:
                    outcome = Rejection(key, path, url, STAGE, entry.reason, entry.detail, KIND)
                else:
                    if request_id := post_request_id(entry):
                        post_requests.add(request_id)
                        held = _posted(held, entry)
                    outcome = guarded_record(path, key, _warc_document, path, key, entry, post_requests, config,
                                             kind=KIND)
                if held is not None:
                    yield held
                held = outcome
    except Exception:  # the file broke off: what was read so far still counts, then its unreadable rest
        if held is not None:
            yield held
            held = None
        raise
    if held is not None:
        yield held


def _posted(held, request) -> Document | Rejection | None:
    """Writers like warcprox put the request after its response, pointing back with
    WARC-Concurrent-To: the held response of a POST is rejected after all."""
    if isinstance(held, Document) and held.meta.get("warc_record_id") and \
            request.headers.get("warc-concurrent-to") == held.meta["warc_record_id"]:
        return Rejection.of(held, STAGE, "warc_post_response", "the response to a POST request (its request follows it)")
    return held


def _warc_document(path: str, key: str, entry, post_requests: set[str], config: InputConfig):
    page = page_from_record(entry, post_requests, config.web.max_html_bytes)
    if isinstance(page, NotAPage):
        return Rejection(key, path, entry.target_uri, STAGE, page.reason, page.detail, KIND)
    meta = {"warc_file": path, "warc_offset": entry.offset, "warc_record_id": entry.headers.get("warc-record-id"),
            "warc_date": entry.headers.get("warc-date"), "charset": page.charset,
            "charset_source": page.charset_source}
    return document_from_html(key, path, page.url, page.html, meta, config.web.max_html_elements)


# ---------------------------------------------------------------- saved pages
def read_html_file(path: str, config: InputConfig) -> Document | Rejection:
    """A saved page; its URL from <link rel=canonical> or og:url, else the file name (recorded as such)."""
    key = html_file_key(path)
    with fsspec.open(path, "rb") as f:
        body = f.read(config.web.max_html_bytes + 1)
    if len(body) > config.web.max_html_bytes:
        return Rejection(key, path, None, STAGE, "html_too_large", f"> max_html_bytes {config.web.max_html_bytes}",
                         KIND)
    page = decode_html(body, None)
    if isinstance(page, NotAPage):
        return Rejection(key, path, None, STAGE, page.reason, page.detail, KIND)
    meta = {"charset": page.charset, "charset_source": page.charset_source}
    return document_from_html(key, path, None, page.html, meta, config.web.max_html_elements)


def read_page_table(path: str, config: InputConfig) -> Iterator[Document | Rejection]:
    """Rows of (url, html) from a parquet or JSONL file, for pages crawled with other tools."""
    columns = config.web
    stem = file_stem(path)
    for row, values in enumerate(_table_rows(path, columns.max_html_bytes)):
        generated = f"{stem}_{row:09d}"
        given = values.get(columns.key_column) if isinstance(values, dict) else None
        key = generated if given is None else str(given)
        if not valid_key(key):  # keys become member names: "../x" or "a.b" must never reach a tar
            yield Rejection(generated, path, None, STAGE, "key_invalid", f"{KEY_RULE_TEXT}: {given!r}"[:300], KIND)
        elif isinstance(values, dict) and (problem := metadata_problem(values, config.max_json_depth)):
            yield Rejection(key, path, None, STAGE, *problem, KIND)  # e.g. a lone surrogate no encoder takes
        else:
            yield guarded_record(path, key, _table_document, path, key, values, config, kind=KIND)


def _table_rows(path: str, max_line_bytes: int) -> Iterator[Any]:
    if path.lower().endswith(".parquet"):
        import pyarrow.parquet as pq

        with fsspec.open(path, "rb") as raw:
            for batch in pq.ParquetFile(raw).iter_batches(batch_size=8):  # 8 pages of up to 32 MB each
                yield from batch.to_pylist()
        return
    with fsspec.open(path, "rb", compression="infer") as f:
        while line := f.readline(max_line_bytes + 1):
            if len(line) > max_line_bytes and not line.endswith(b"\n"):
                while (rest := f.readline(1 << 20)) and not rest.endswith(b"\n"):
                    pass  # the rest of an oversized line, read in bounded pieces and dropped
                yield {"__invalid__": f"a line longer than max_html_bytes ({max_line_bytes})"}
                continue
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except Exception as err:  # ValueError, RecursionError (100,000 nested brackets): this row only
                yield {"__invalid__": f"{type(err).__name__}: {err}"[:300]}


def _table_document(path: str, key: str, values: Any, config: InputConfig) -> Document | Rejection:
    columns = config.web
    if not isinstance(values, dict) or "__invalid__" in values:
        detail = values.get("__invalid__", "") if isinstance(values, dict) else "a row that is not an object"
        return Rejection(key, path, None, STAGE, "row_invalid_json", detail, KIND)
    url, html = values.get(columns.url_column), values.get(columns.html_column)
    if not isinstance(url, str) or (problem := valid_target_uri(url)) is not None:
        detail = problem.detail if isinstance(url, str) else f"column {columns.url_column!r} holds no URL"
        return Rejection(key, path, url if isinstance(url, str) else None, STAGE, "page_bad_url", detail, KIND)
    if isinstance(html, (bytes, bytearray)):
        if len(html) > columns.max_html_bytes:
            return Rejection(key, path, url, STAGE, "html_too_large", f"{len(html)} bytes", KIND)
        page = decode_html(bytes(html), None)
        if isinstance(page, NotAPage):
            return Rejection(key, path, url, STAGE, page.reason, page.detail, KIND)
        html, meta = page.html, {"charset": page.charset, "charset_source": page.charset_source}
    elif isinstance(html, str):
        if len(html) > columns.max_html_bytes:
            return Rejection(key, path, url, STAGE, "html_too_large", f"{len(html)} characters", KIND)
        meta = {}
    else:
        return Rejection(key, path, url, STAGE, "html_missing", f"column {columns.html_column!r} holds no HTML", KIND)
    return document_from_html(key, path, url, html, meta, columns.max_html_elements)


# ---------------------------------------------------------------- one page
def document_from_html(key: str, source: str, url: str | None, html: str, meta: dict[str, Any],
                       max_elements: int = 1_000_000) -> Document | Rejection:
    # A crawled URL's user:password is never written (shards, tables, report), nor passed on to the
    # page's images, which resolve against the URL without it.
    shown, url = redact_credentials(url), without_credentials(url)
    names = tag_names(html)
    if (cost := over_limit(html, max_elements, names)) is not None:  # before the parser builds it all in memory
        return Rejection(key, source, url, STAGE, "html_too_complex",
                         f"its HTML5 parse would build over {max_elements:,} elements (formatting tags left open "
                         f"are rebuilt in every block; {cost:,} counted so far)", KIND)
    if (problem := depth_problem(html, names)) is not None:  # before the parser takes hours over it
        return Rejection(key, source, url, STAGE, "html_too_complex", problem, KIND)
    page = extract(html, url)
    if url is None:  # a saved file: its canonical URL (or og:url), else the file's own path
        canonical = page.canonical_url if page.canonical_url and valid_target_uri(page.canonical_url) is None else None
        url, source_of_url = (canonical, "canonical") if canonical else (source, "file")
        meta = {**meta, "url_source": source_of_url}
        if canonical:
            page = extract(html, canonical)  # relative image URLs resolve against it
    if url == without_credentials(shown) and shown is not None:  # the page's own URL: marked as having had them
        url = shown
    doc_meta = {"url": url, "domain": page_domain(url), "title": page.title, "html_lang": page.lang, **meta}
    return Document(key=key, source=source, url=url, nodes=page.nodes,
                    meta={k: v for k, v in doc_meta.items() if v is not None})
