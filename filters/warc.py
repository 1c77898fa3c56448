"""WARC records from a (possibly damaged) WARC file, with resync after every kind of damage.

Real crawls are damaged: records cut short, gzip members that do not decompress, garbage between
records. fastwarc and warcio both stop at the first corrupt gzip member (checked: an OSError or
ArchiveLoadFailed ends the iteration and the rest of the file is lost), so the framing is ours:

- gzip files are read member by member (the standard per-record compression, as Common Crawl
  writes it); a member that does not decompress becomes one `warc_bad_gzip` entry and reading
  resumes at the next gzip magic bytes (1f 8b 08) that start a member which does decompress;
- uncompressed files are read by Content-Length; a record whose block runs into the next
  `WARC/1.x` line (it was cut short) is `warc_truncated`, and reading resumes at that line;
- anything that is not a WARC header where one should be (`warc_bad_header`) is skipped up to the
  next line starting with `WARC/1.`.

Every damaged region becomes exactly one WarcEntry with a reason, so a file's entries count all
its records, good and bad. Offsets are those of the record in the file (for gzip, the compressed
offset of its member: what CDX indexes point at). Pure Python with zlib; only a whole-file gzip
member larger than 256 MiB is inflated into a temporary file (deleted when read), never memory.
"""

from __future__ import annotations

import io
import re
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

GZIP_MAGIC = b"\x1f\x8b\x08"
MAX_HEADER_BYTES = 64 << 10
DEFAULT_MAX_RECORD_BYTES = 64 << 20
DEFAULT_MAX_MEMBER_BYTES = 16 << 30  # a whole-file gzip WARC of 1 GB inflates to ~5 GB
_IN_MEMORY = 256 << 20  # inflated bytes of one gzip member kept in memory; beyond, a temporary file
_SCAN_CHUNK = 1 << 20
_VERSION = re.compile(rb"WARC/1\.[0-9]")
_LENGTH = re.compile(r"[0-9]{1,19}")
_NEXT_RECORD = re.compile(rb"(?:^|\n)(WARC/1\.[0-9]\r?\n)")
# In a block already known to be cut short, the next record may start mid-line (a writer died
# mid-record and another appended to the file): a version line followed by a header line.
_CUT_BY_RECORD = re.compile(rb"WARC/1\.[0-9]\r?\n(?=[A-Za-z][A-Za-z0-9-]*:)")


@dataclass(slots=True)
class WarcEntry:
    """One record of a WARC file, or one damaged region of it (then `reason` says what broke)."""

    offset: int
    headers: dict[str, str] = field(default_factory=dict)  # WARC headers, names lower-cased
    block: bytes | None = None
    reason: str | None = None
    detail: str = ""
    # Its place among the entries of its gzip member. Per-record gzip (Common Crawl) gives 0 always;
    # a whole-file gzip (`gzip x.warc`) is one member whose records all share its offset, so offset
    # alone does not tell them apart (their keys collided).
    member_index: int = 0

    @property
    def record_type(self) -> str:
        return self.headers.get("warc-type", "").lower()

    @property
    def target_uri(self) -> str | None:
        uri = self.headers.get("warc-target-uri")
        return uri.strip("<>") if uri is not None else None  # WARC 1.0's example wraps it in <>


ReadAt = Callable[[int, int], bytes]  # (offset, length) -> up to length bytes at offset


def iter_warc(raw: BinaryIO, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
              max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES) -> Iterator[WarcEntry]:
    """Every record (or damaged region) of a WARC file, gzip or not, in file order."""
    head = raw.read(2)
    raw.seek(0)
    if head == GZIP_MAGIC[:2]:
        yield from _iter_gzip(raw, max_record_bytes, max_member_bytes)
    else:
        yield from _parse_records(_file_reader(raw), 0, None, max_record_bytes)


# ---------------------------------------------------------------- record framing
def _parse_records(read_at: ReadAt, start: int, end: int | None, max_record_bytes: int,
                   member_offset: int | None = None) -> Iterator[WarcEntry]:
    """Records from start to end (None: to EOF). In a gzip member, entries carry the member's offset."""
    pos = start
    while end is None or pos < end:
        pos = _skip_blank(read_at, pos, end)
        entry, resume = _record_at(read_at, pos, end, max_record_bytes,
                                   member_offset if member_offset is not None else pos)
        if entry is None:
            return
        yield entry
        if resume is None:  # nothing readable after it
            return
        pos = resume


def _record_at(read_at: ReadAt, pos: int, end: int | None, max_record_bytes: int,
               where: int) -> tuple[WarcEntry | None, int | None]:
    """(the record or damaged region at pos, where reading goes on); (None, None) at the end of data."""
    head = read_at(pos, MAX_HEADER_BYTES)
    if end is not None:
        head = head[: end - pos]
    if not head:
        return None, None
    if not _VERSION.match(head):
        resume = _find_next_record(read_at, pos + 1, end)
        return WarcEntry(where, reason="warc_bad_header",
                         detail=f"no WARC/1.x line at offset {pos}; skipped {_span(pos, resume)}"), resume
    terminator, sep = _header_end(head)
    if terminator < 0:
        cut = len(head) < MAX_HEADER_BYTES
        resume = _find_next_record(read_at, pos + 1, end)
        return WarcEntry(where, reason="warc_truncated" if cut and resume is None else "warc_bad_header",
                         detail="the WARC header block never ends" + ("" if cut else " within 64 KiB")), resume
    headers = _parse_headers(head[:terminator])
    length = headers.get("content-length", "").strip()
    if not _LENGTH.fullmatch(length):  # str.isdigit() also takes "²"; int() refuses 5,000 digits
        return (WarcEntry(where, headers, reason="warc_bad_header", detail=f"Content-Length is {length or 'missing'!r}"),
                _find_next_record(read_at, pos + 1, end))
    block_start, size = pos + terminator + sep, int(length)
    block_end = block_start + size
    if size > max_record_bytes:
        if _within(read_at, block_end, end):
            return WarcEntry(where, headers, reason="warc_record_too_large",
                             detail=f"{size} bytes > max_record_bytes {max_record_bytes}"), block_end
        resume = _find_next_record(read_at, block_start, end)  # it claims more bytes than the data holds
        return WarcEntry(where, headers, reason="warc_truncated", detail=f"Content-Length {size} runs past the end "
                         f"of the data; skipped {_span(pos, resume)}"), resume
    block = read_at(block_start, size + 8)
    if end is not None:
        block = block[: max(0, end - block_start)]
    trailer = block[size:]
    block = block[:size]
    if len(block) < size or not (trailer.startswith((b"\r\n", b"\n", b"WARC/1.")) or trailer in (b"", b"\r")):
        # Short, or not followed by the blank lines that end a record: cut short where the next
        # record starts (uncompressed files), or at the end of the data.
        # Line-start matches only missed a record appended right after the cut bytes (the cut
        # record swallowed it as its block and the record after it was lost): search mid-line too.
        starts = [m.start(1) for m in [_NEXT_RECORD.search(block)] if m]
        starts += [m.start() for m in [_CUT_BY_RECORD.search(block)] if m]
        cut_at = min(starts) if starts else None
        if cut_at is not None or len(block) < size:
            return (WarcEntry(where, headers, block[:cut_at], reason="warc_truncated",
                              detail=f"{len(block) if cut_at is None else cut_at} of {size} block bytes"),
                    block_start + cut_at if cut_at is not None else None)
        # Whole, yet not followed by a record's end: the Content-Length is too short. Kept, it would
        # be a page cut short, and its remaining bytes a second, bad-header entry.
        resume = _find_next_record(read_at, block_start, end)
        return (WarcEntry(where, headers, reason="warc_bad_header", detail=f"Content-Length {size} ends the block "
                          f"mid-record (no blank line after it); skipped {_span(pos, resume)}"), resume)
    return WarcEntry(where, headers, bytes(block)), block_end


def _header_end(head: bytes) -> tuple[int, int]:
    """(offset, separator length) of the blank line ending a header block: CRLF CRLF or, leniently,
    bare LF LF, whichever comes first (a block of bare-LF headers may be followed by CRLF ones)."""
    found = [(i, n) for i, n in ((head.find(b"\r\n\r\n"), 4), (head.find(b"\n\n"), 2)) if i >= 0]
    return min(found) if found else (-1, 0)


def _within(read_at: ReadAt, offset: int, end: int | None) -> bool:
    """Whether the data reaches `offset` (a record claiming more bytes than the file holds is cut)."""
    if end is not None:
        return offset <= end
    return offset == 0 or bool(read_at(offset - 1, 1))


def _parse_headers(data: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    last = None
    for line in data.decode("utf-8", "replace").splitlines()[1:]:
        if line[:1] in (" ", "\t") and last:  # a folded continuation line
            headers[last] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        if sep:
            last = name.strip().lower()
            headers[last] = value.strip()
    return headers


def _skip_blank(read_at: ReadAt, pos: int, end: int | None) -> int:
    while end is None or pos < end:
        chunk = read_at(pos, 64)
        stripped = chunk.lstrip(b"\r\n")
        pos += len(chunk) - len(stripped)
        if stripped or not chunk:
            return pos
    return pos


def _find_next_record(read_at: ReadAt, pos: int, end: int | None) -> int | None:
    """Offset of the next record, searching from pos: a line starting with a WARC version, or a
    version line right after stray bytes (no newline before it) when a header line follows it; only
    line starts were taken, so a record glued to the garbage before it was lost with the garbage."""
    while end is None or pos < end:
        chunk = read_at(pos - 1 if pos else 0, _SCAN_CHUNK + 256)  # overlap: a version line + a header line
        if end is not None:
            chunk = chunk[: end - pos + 1]
        if not chunk:
            return None
        base = pos - 1 if pos else 0
        starts = [m.start(1) for m in [_NEXT_RECORD.search(chunk, 1 if pos else 0)] if m]
        starts += [m.start() for m in [_CUT_BY_RECORD.search(chunk, 1)] if m]
        if starts:
            return base + min(starts)
        if len(chunk) < _SCAN_CHUNK:
            return None
        pos += _SCAN_CHUNK
    return None


def _span(start: int, resume: int | None) -> str:
    return f"bytes {start}..{resume}" if resume is not None else f"from {start} to the end"


def _file_reader(raw: BinaryIO) -> ReadAt:
    def read_at(offset: int, length: int) -> bytes:
        # A Content-Length of 10^18 points past what a file can hold: seek() refuses it (EINVAL, or
        # ValueError past 2^63); there is no data there.
        if offset >= 1 << 62:
            return b""
        try:
            raw.seek(offset)
        except OSError:
            return b""
        return raw.read(length)
    return read_at


# ---------------------------------------------------------------- gzip members
def _iter_gzip(raw: BinaryIO, max_record_bytes: int, max_member_bytes: int) -> Iterator[WarcEntry]:
    pos = 0
    while True:
        raw.seek(pos)
        if not raw.read(1):
            return
        member = _inflate_member(raw, pos, max_member_bytes)
        if member.error is not None or member.too_large:
            resume = _next_good_member(raw, pos + 1, max_record_bytes)
            reason, what = ("warc_record_too_large", f"the gzip member inflates past {max_member_bytes} bytes") \
                if member.too_large else ("warc_bad_gzip", member.error)
            yield WarcEntry(pos, reason=reason, detail=f"{what}; skipped {_span(pos, resume)}")
            if resume is None:
                return
            pos = resume
            continue
        with member.data:
            entries = 0
            for entry in _parse_records(_file_reader(member.data), 0, member.size, max_record_bytes, pos):
                entry.member_index = entries
                entries += 1
                yield entry
        if member.cut:  # the file ends inside this member: its cut record was reported above, if any
            if not entries:
                yield WarcEntry(pos, reason="warc_truncated", detail="the file ends inside this gzip member")
            return
        pos = member.end


@dataclass(slots=True)
class _Member:
    data: BinaryIO | None = None  # the inflated bytes (in memory, or spilled to a temporary file)
    size: int = 0
    end: int = 0  # file offset just past the member
    error: str | None = None
    cut: bool = False  # the file ended inside the member
    too_large: bool = False


def _inflate_member(raw: BinaryIO, start: int, limit: int, probe: bool = False) -> _Member:
    """Decompress the gzip member at `start`. Per-record members (Common Crawl's) stay in memory; a
    whole-file gzip (`gzip x.warc`: one member, every record) spills to a temporary file past
    _IN_MEMORY bytes, so its records are framed one by one like an uncompressed file's. Past
    `limit` inflated bytes the member is given up at once (a bomb costs neither memory nor hours).
    probe: stop after the first bytes (to test whether a member starts like a WARC record)."""
    raw.seek(start)
    if raw.read(3) != GZIP_MAGIC:
        return _Member(error="no gzip magic bytes")
    raw.seek(start)
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    sink: BinaryIO = io.BytesIO()
    size, consumed = 0, 0
    while not inflater.eof:
        chunk = inflater.unconsumed_tail or raw.read(1 << 16)
        if not inflater.unconsumed_tail:
            consumed += len(chunk)
        if not chunk:
            return _Member(sink, size, start + consumed, cut=True)
        try:
            piece = inflater.decompress(chunk, 1 << 20)
        except zlib.error as err:
            return _Member(error=f"gzip member does not decompress ({err})")
        size += len(piece)
        if size > limit:
            return _Member(too_large=True)
        if size > _IN_MEMORY and isinstance(sink, io.BytesIO):
            spilled = tempfile.TemporaryFile()
            spilled.write(sink.getvalue())
            sink = spilled
        sink.write(piece)
        if probe and size >= 64:
            break
    return _Member(sink, size, start + consumed - len(inflater.unused_data))


def _next_good_member(raw: BinaryIO, pos: int, max_record_bytes: int) -> int | None:
    """The next offset holding gzip magic bytes whose member inflates to something starting like a
    WARC record; random magic bytes inside compressed data are skipped."""
    while True:
        raw.seek(pos)
        chunk = raw.read(_SCAN_CHUNK + 2)
        if not chunk:
            return None
        found = chunk.find(GZIP_MAGIC)
        if found < 0:
            if len(chunk) < _SCAN_CHUNK + 2:
                return None
            pos += _SCAN_CHUNK
            continue
        candidate = pos + found
        member = _inflate_member(raw, candidate, max_record_bytes, probe=True)
        if member.error is None and not member.too_large and _VERSION.match(
                member.data.getvalue()[:256].lstrip(b"\r\n")):
            return candidate
        pos = candidate + 1
