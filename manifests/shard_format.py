"""The shard format, in one place: member names, the per-kind layout, reading, writing, and the
image decode every reader of a shard uses. docs/SHARD_FORMAT.md describes the same for people.

Pairs follow the img2dataset / open_clip webdataset convention: `KEY.jpg` (one member name for
every image, whatever its format, as img2dataset writes; the format is KEY.json's `image_format`),
`KEY.txt`, `KEY.json` in `shards/NNNNN.tar`, plus `metadata/NNNNN.parquet` with one row per sample. A key is the member path
up to the first dot of its file name, directories included: `a/0001.jpg` and `b/0001.jpg` are two
samples. Curate, the trainer and `verify` all read shards through this module, so they agree on
what a sample is; images are decoded by `decode_image` alone (EXIF orientation applied, pixel
count checked before any pixel is decoded).
"""

from __future__ import annotations

import bisect
import io
import json
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from filters.image_decode import DEFAULT_MAX_PIXELS, decode_rgb
from filters.image_format import extension_for, format_name
from filters.sample import Sample
from manifests.field_columns import FIELD_COLUMNS_KEY, JSON_ONLY_KEY, field_columns

# 4: embedding columns are list<float16> (fixed-size lists with a null were unreadable in pyarrow),
#    one parquet schema for the whole run. 3: one image member name (KEY.jpg by default) with the
#    format in KEY.json; parquets in metadata/; image_byte_count (was image_bytes); KEY.json's scalar
#    fields as columns. 2: keys are full member paths in every reader (1: the trainer keyed by
#    basename). docs/SHARD_FORMAT.md has the table.
FORMAT_VERSION = 4
SHARDS_DIR = "shards"  # the tars, with sizes.json and NNNNN_stats.json
TABLES_DIR = "metadata"  # one parquet per shard, alone in its directory so the directory opens as a dataset
ORIGINAL_IMAGE_MEMBER = "original"  # output.image_member: each image under its own format's extension
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff")  # readable image members
CAPTION_EXT = "txt"
METADATA_EXT = "json"

# Keys become file names: letters, digits, _ and -, in /-separated parts; no "..", no absolute paths.
# fullmatch, not match + "$": "$" also matches before a trailing newline.
_KEY_RULE = re.compile(r"[A-Za-z0-9_\-]+(?:/[A-Za-z0-9_\-]+)*")
# A part becomes a file name with its extension (KEY.kosmos2.txt, KEY.12.jpg) when a shard is
# extracted: file systems refuse names over 255 bytes, so `tar x` failed on longer keys.
MAX_KEY_PART = 230
KEY_RULE_TEXT = f"keys hold letters, digits, _ and -, in parts separated by /, each at most {MAX_KEY_PART} long"

# Grounded samples (the grounding stage): text renderings as their own members, GRIT's columns in the parquet.
RENDERING_MEMBERS = {"grounding_kosmos2": "kosmos2.txt", "grounding_paligemma": "paligemma.txt"}
GRIT_COLUMNS = ("noun_chunks", "ref_exps")

decode_image = decode_rgb  # the one decode: bytes -> RGB PIL image as displayed, or an ImageProblem
MAX_PIXELS = DEFAULT_MAX_PIXELS  # its default pixel guard


def valid_key(key: Any) -> bool:
    return (isinstance(key, str) and _KEY_RULE.fullmatch(key) is not None
            and all(len(part) <= MAX_KEY_PART for part in key.split("/")))


def split_member_name(name: str) -> tuple[str, str]:
    """webdataset's convention: the key is the whole path up to the first dot of the file name."""
    directory, _, filename = name.rpartition("/")
    stem, dot, ext = filename.partition(".")
    key = f"{directory}/{stem}" if directory else stem
    return key, ext.lower() if dot else ""


# ---------------------------------------------------------------- reading: streaming
@dataclass
class TarRecord:
    """The members of one key, in stream order: ext -> bytes, plus what was wrong with any member."""

    key: str
    parts: dict[str, bytes] = field(default_factory=dict)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (reason, detail)


class _StopRecordingTarInfo(tarfile.TarInfo):
    """Notes on its archive why reading member headers stopped. tarfile ends the member list
    silently, exactly as at the end-of-archive zero block, when the file is cut at a member
    boundary, cut inside a header, or has an unreadable header after the first member: every later
    member would be lost without a word."""

    @classmethod
    def fromtarfile(cls, tar):
        try:
            return super().fromtarfile(tar)
        except tarfile.HeaderError as err:
            tar.vlcurate_stop = err
            raise


def open_tar(fileobj: IO[bytes], mode: str) -> tarfile.TarFile:
    """tarfile.open for reading shards; iterate it with `all_members` so a cut-short file is an error."""
    return tarfile.open(fileobj=fileobj, mode=mode, tarinfo=_StopRecordingTarInfo)


def all_members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """The archive's members, then tarfile.ReadError if reading stopped anywhere but at the
    end-of-archive marker (the records already read stay good; the reader rejects the rest)."""
    yield from tar
    stop = getattr(tar, "vlcurate_stop", None)
    if stop is None or isinstance(stop, tarfile.EOFHeaderError):
        return
    if isinstance(stop, tarfile.EmptyHeaderError):
        raise tarfile.ReadError(f"the archive ends at byte {tar.offset} without its end-of-archive blocks "
                                "(truncated at a member boundary?)")
    if isinstance(stop, tarfile.TruncatedHeaderError):
        raise tarfile.ReadError(f"the archive is cut inside a member header at byte {tar.offset}")
    raise tarfile.ReadError(f"unreadable member header at byte {tar.offset} ({stop}); the rest of the file is not read")


def iter_tar_records(fileobj: IO[bytes], max_member_bytes: int) -> Iterator[TarRecord]:
    """Consecutive members with the same key form one record (webdataset's grouping).

    Stream mode ("r|*"): one pass, no seeking, works for .tar.gz and remote files alike. Members are
    read into memory, never extracted; oversized, repeated and non-regular members become problems.
    """
    with open_tar(fileobj, "r|*") as tar:
        record: TarRecord | None = None
        for member in all_members(tar):
            key, ext = split_member_name(member.name)
            if record is None or key != record.key:
                if record is not None:
                    yield record
                record = TarRecord(key)
            if not member.isreg():
                record.problems.append(("member_not_regular_file", f"{member.name} is not a regular file"))
            elif member.size > max_member_bytes:
                record.problems.append(("member_too_large", f"{member.name}: {member.size} > {max_member_bytes} bytes"))
            elif ext in record.parts:
                record.problems.append(("member_repeated", f"{member.name} appears twice in the record"))
            else:
                handle = tar.extractfile(member)
                record.parts[ext] = handle.read() if handle else b""
        if record is not None:
            yield record


def image_member(parts: dict[str, Any], extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> str | None:
    """Which member of a record is its image: the first of `extensions` present."""
    return next((e for e in extensions if e in parts), None)


# ---------------------------------------------------------------- reading: random access
Span = tuple[int, int]  # (offset of the member's data in the tar, size)


@dataclass(frozen=True)
class PairEntry:
    key: str
    image: Span
    caption: Span | None  # None only from index_pairs(require_caption=False)
    image_ext: str


def index_pairs(fileobj: IO[bytes], require_caption: bool = True,
                left_out: dict[str, int] | None = None, keep_repeated: bool = False) -> list[PairEntry]:
    """Every key of an uncompressed tar with an image and a caption (or, for the report's thumbnails
    of caption_missing rejections, an image alone), by key, for random access. `left_out` counts the
    keys that are not such pairs, by reason: key_invalid, no_image, no_caption, and member_repeated
    (a member given twice, e.g. KEY.txt: which caption goes with the image cannot be told; the report,
    `keep_repeated`, shows such a record with its last members)."""
    members: dict[str, dict[str, Span]] = {}
    repeated: set[str] = set()
    with open_tar(fileobj, "r:") as tar:
        for m in all_members(tar):
            if m.isfile():
                key, ext = split_member_name(m.name)
                parts = members.setdefault(key, {})
                if ext in parts:
                    repeated.add(key)
                parts[ext] = (m.offset_data, m.size)
    entries = []
    for key in sorted(members):
        parts = members[key]
        ext = image_member(parts)
        reason = ("key_invalid" if not valid_key(key) else "member_repeated" if key in repeated and not keep_repeated
                  else "no_image" if ext is None else "no_caption" if CAPTION_EXT not in parts and require_caption
                  else None)
        if reason is None:
            entries.append(PairEntry(key, parts[ext], parts.get(CAPTION_EXT), ext))
        elif left_out is not None:
            left_out[reason] = left_out.get(reason, 0) + 1
    return entries


def read_span(f: IO[bytes], span: Span) -> bytes:
    f.seek(span[0])
    return f.read(span[1])


@dataclass
class PairShardIndex:
    """Pairs of many shards, addressable by one global index (the trainer's random access)."""

    urls: list[str]
    entries: list[list[PairEntry]]
    starts: list[int]  # cumulative counts
    left_out: dict[str, int] = field(default_factory=dict)  # records that are not pairs, by reason

    @property
    def total(self) -> int:
        return self.starts[-1]

    def locate(self, i: int) -> tuple[int, int]:
        shard = bisect.bisect_right(self.starts, i) - 1
        return shard, i - self.starts[shard]


# ---------------------------------------------------------------- writing
def shard_json(sample: Sample) -> dict[str, Any]:
    """KEY.json: the record's own metadata with vlcurate's annotations on top."""
    return {**sample.meta, "key": sample.key, "url": sample.url, "caption": sample.caption, **sample.annotations}


def add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    """A member with no time, owner or mode variation: the same data gives the same bytes."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def pair_rows(samples: list[Sample], image_member: str = "jpg") -> list[dict[str, Any]]:
    """One parquet row per sample, with `fields` (KEY.json as a dict) and `member` (the image
    member's extension) for the tar. `image_member`: the one extension every image is written under
    (readers that infer columns from the first samples' extensions, HF datasets among them, then see
    every image), or "original" for each format's own."""
    rows = []
    for sample in samples:
        fields = shard_json(sample)
        image_format = member = None
        if sample.image is not None:
            sniffed = extension_for(sample.image)
            # the heuristics stage's reading of the header when there is one (it knows TIFF, MPO, ...)
            image_format = sample.annotations.get("image_format") or format_name(sample.image)
            own = sniffed if sniffed != "bin" else (sample.image_ext or "bin")
            member = own if image_member == ORIGINAL_IMAGE_MEMBER else image_member
            if image_format is not None:
                fields["image_format"] = image_format
        rows.append({
            "key": sample.key,
            "url": sample.url,
            "caption": sample.caption,
            "source": sample.source,
            "image_format": image_format,
            "image_byte_count": len(sample.image) if sample.image is not None else None,
            "json": json.dumps(fields, ensure_ascii=False, sort_keys=True),
            "fields": fields,
            "member": member,
        })
    return rows


def pair_parquet(samples: list[Sample], rows: list[dict[str, Any]]) -> bytes:
    table = pa.Table.from_pylist([{n: r[n] for n in PAIR_PARQUET_SCHEMA.names} for r in rows], schema=PAIR_PARQUET_SCHEMA)
    for vector_name, column in _vector_columns(samples).items():
        table = table.append_column(vector_name, column)
    for name in GRIT_COLUMNS:  # grounded samples: GRIT's own columns, so GRIT readers work unchanged
        if any(name in s.annotations for s in samples):
            values = [s.annotations.get(name) for s in samples]
            table = table.append_column(name, pa.array(values, type=pa.list_(pa.list_(pa.float64()))))
    columns, json_only = field_columns([r["fields"] for r in rows], set(table.column_names))
    for name, column in columns.items():
        table = table.append_column(name, column)
    # which columns are KEY.json fields, and which fields stay in `json`: table_union.py reads these
    # to give every shard of a run one schema
    table = table.replace_schema_metadata({FIELD_COLUMNS_KEY: json.dumps(sorted(columns)),
                                           JSON_ONLY_KEY: json.dumps(json_only)})
    buffer = io.BytesIO()  # metadata is small; buffering keeps pyarrow away from the atomic writer
    pq.write_table(table, buffer)
    return buffer.getvalue()


def write_pair_tar(out: IO[bytes], samples: list[Sample], rows: list[dict[str, Any]]) -> None:
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for sample, row in zip(samples, rows):
            if sample.image is not None:
                add_member(tar, f"{sample.key}.{row['member']}", sample.image)
            if sample.caption is not None:
                add_member(tar, f"{sample.key}.{CAPTION_EXT}", sample.caption.encode("utf-8"))
            add_member(tar, f"{sample.key}.{METADATA_EXT}", row["json"].encode("utf-8"))
            for annotation, ext in RENDERING_MEMBERS.items():
                if isinstance(sample.annotations.get(annotation), str):
                    add_member(tar, f"{sample.key}.{ext}", sample.annotations[annotation].encode("utf-8"))


def write_pair_shard(root: str, index: int, samples: list[Sample],
                     rows: list[dict[str, Any]] | None = None, image_member: str = "jpg") -> dict[str, Any]:
    """metadata/NNNNN.parquet, then shards/NNNNN.tar, both atomic: a visible .tar means a whole
    shard. `rows`: pair_rows(samples) when the caller has them already."""
    from manifests.storage import atomic_open

    name, table = f"{SHARDS_DIR}/{index:05d}", f"{TABLES_DIR}/{index:05d}.parquet"
    rows = pair_rows(samples, image_member) if rows is None else rows
    with atomic_open(f"{root}/{table}") as out:
        out.write(pair_parquet(samples, rows))
    parquet = {"name": table, "bytes": out.bytes, "sha256": out.sha256.hexdigest()}
    with atomic_open(f"{root}/{name}.tar") as out:
        write_pair_tar(out, samples, rows)
    return {"name": f"{name}.tar", "samples": len(samples), "bytes": out.bytes,
            "sha256": out.sha256.hexdigest(), "metadata": parquet}


def _vector_columns(samples: list[Sample]) -> dict[str, pa.Array]:
    """Embeddings as list<float16> columns, null where a sample has none. Not fixed-size lists:
    pyarrow before 26 cannot read back a fixed-size list column holding a null (apache/arrow#35692:
    "Expected all lists to be of size=N but index 1 had size=0"), so one sample without an
    embedding, or a shard without any beside shards with them, made the table unreadable."""
    columns = {}
    for name in sorted({n for s in samples for n in s.vectors}):
        dims = {len(s.vectors[name]) // 2 for s in samples if name in s.vectors}
        if len(dims) != 1:
            raise ValueError(f"vector {name!r} has mixed lengths {sorted(dims)} within one shard")
        present = [s.vectors[name] for s in samples if name in s.vectors]
        values = pa.array(np.frombuffer(b"".join(present), "<f2"), type=pa.float16())
        lengths = np.cumsum([0] + [len(s.vectors[name]) // 2 if name in s.vectors else 0 for s in samples])
        offsets = pa.array(lengths.astype(np.int32))
        mask = pa.array([name not in s.vectors for s in samples])
        columns[name] = pa.ListArray.from_arrays(offsets, values, mask=mask)
    return columns


PAIR_PARQUET_SCHEMA = pa.schema([
    ("key", pa.string()),
    ("url", pa.string()),
    ("caption", pa.string()),
    ("source", pa.string()),
    ("image_format", pa.string()),
    ("image_byte_count", pa.int64()),
    ("json", pa.string()),
])
