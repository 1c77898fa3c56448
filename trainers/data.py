"""Training batches from curated webdataset shards, as a pure function of the step.

Every slot j of the global batch at micro-step s is drawn by a generator seeded with (seed, s, j):
shards are resampled in proportion to their sample counts (sampling with replacement over the
whole dataset). Rank r of W fills slots [r*B, (r+1)*B), so W processes see exactly the samples one
process sees with a global batch of W*B, and a run resumed at micro-step s sees exactly the batches
an uninterrupted run saw from s on, whatever the number of DataLoader workers.

Shards are read through manifests/shard_format.py, the one definition of the format that curation
and `verify` use too: samples are keyed by their full member path (`a/0001` and `b/0001` are two
samples), read by random access from a member index built once (one ranged read per member
through fsspec, so shards can live on any filesystem; local or cached shards train fastest), and
images are decoded by shard_format.decode_image (EXIF orientation applied, pixel count checked
first). Decode and the task's encoding run in DataLoader workers; a sample that cannot be decoded
or encoded is skipped, replaced by another draw, and counted.

Remote shards (s3://, gs://, ...) take data.storage_options (`apply_storage_options`), and each
member is one ranged read: a shard is opened without fsspec's read-ahead cache, which would fetch a
block (50 MB for s3fs) per randomly drawn sample. Evaluation reads its split in order
(`TaskBatches.in_order`), each sample once, with every reference caption of KEY.json.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import stat
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import fsspec
from torch.utils.data import IterableDataset, get_worker_info

from filters.image_checks import ImageProblem
from filters.record_checks import DEFAULT_MAX_CAPTION_CHARS
from manifests.manifest import MANIFEST_NAME, read_manifest
from manifests.shard_format import (METADATA_EXT, PairEntry, PairShardIndex, Span, all_members, decode_image,
                                    index_pairs, open_tar, read_span, split_member_name)
from manifests.storage import glob_files, is_local, sha256_of, use_storage_options
from trainers.tasks.base import Record, Task

log = logging.getLogger("vlcurate")
# Curation's caption cap (input.max_caption_chars): a caption past it is no training text, and one
# of 30 MB cost ~30 s of tokenizing per draw; a KEY.json of references past 1 MB is not read.
MAX_CAPTION_CHARS = DEFAULT_MAX_CAPTION_CHARS
MAX_METADATA_BYTES = 1 << 20


def shard_urls(spec: str, key: str = "data.shards") -> list[str]:
    """A run's manifest.json (its shard list), a brace pattern, or a glob. `key`: the config key that
    gave `spec`, named in errors."""
    if spec.endswith(MANIFEST_NAME):
        root = spec.rsplit("/", 1)[0]
        try:
            manifest = read_manifest(root)
        except (FileNotFoundError, NotADirectoryError):
            raise FileNotFoundError(f"{key} {spec!r} does not exist (a curated run's manifest.json)") from None
        return [f"{root}/{s.name}" for s in manifest.shards]
    import braceexpand

    urls = []
    for pattern in braceexpand.braceexpand(spec):
        urls += glob_files(pattern) if any(c in pattern for c in "*?[") else [pattern]
    if not urls:
        raise FileNotFoundError(f"{key} {spec!r} names no shard")
    return urls


def apply_storage_options(specs: list[str], options: dict[str, Any]) -> None:
    """data.storage_options become the fsspec defaults of each remote spec's store (its protocol) in
    this process (manifests.storage.use_storage_options): the manifest, globs and the shard index use
    them; TaskBatches passes them to open_shard itself. Local paths take none. Never logged or written."""
    if not options:
        return
    for spec in specs:
        if spec and fsspec.utils.get_protocol(spec) not in ("file", "local"):
            use_storage_options(spec, dict(options))


def open_shard(url: str, storage_options: dict[str, Any] | None = None):
    """A shard for random access: remote stores without read-ahead, so reading a member is one ranged
    request of its size (s3fs would otherwise fetch a 50 MB block for every sample drawn).
    storage_options: passed on for a remote URL (DataLoader workers started by spawn inherit no defaults)."""
    remote = fsspec.utils.get_protocol(url) not in ("file", "local")
    fs, path = fsspec.core.url_to_fs(url, **((storage_options or {}) if remote else {}))
    if not is_local(fs):
        try:
            return fs.open(path, "rb", cache_type="none")
        except TypeError:  # a filesystem without block caches (or one that sets its own)
            pass
    return fs.open(path, "rb")


class DataError(ValueError):
    """The training data cannot be used as given: one line naming the shard or the key."""


def one_line(err: BaseException) -> str:
    """A DataError raised in a DataLoader worker arrives with the worker's traceback in its message:
    the message is what follows its last `DataError: `."""
    text = str(err).strip()
    marker = text.rfind("DataError: ")
    return " ".join((text[marker + len("DataError: "):] if marker >= 0 else text).split())


def manifest_shards(spec: str) -> dict[str, tuple[int, str]]:
    """shard URL -> (bytes, sha256) as a run's manifest.json lists them; {} for a pattern."""
    if not spec.endswith(MANIFEST_NAME):
        return {}
    root = spec.rsplit("/", 1)[0]
    try:
        manifest = read_manifest(root)
    except (FileNotFoundError, NotADirectoryError):
        return {}
    return {f"{root}/{s.name}": (s.bytes, s.sha256) for s in manifest.shards if s.kind == "sample"}


def build_index(urls: list[str], key: str = "data.shards", expected: dict[str, tuple[int, str]] | None = None,
                warn: bool = True, verify: bool = False) -> PairShardIndex:
    """The pairs of every shard. A shard that is not a readable tar, or (`expected`, from a manifest)
    whose size is not what its run wrote, stops with one line: training on a changed or cut shard
    would go on with less data, or other data, than the run says. (Its pair count may be lower than
    the manifest's records: a run without caption rules keeps images without captions.)
    `warn`: log the records left out (rank 0 only, under DDP). `verify` (data.verify_shards): also hash
    each shard `expected` lists against its sha256."""
    entries, starts, left_out = [], [0], {}
    for url in urls:
        _refuse_special_file(url, key)
        try:
            with fsspec.open(url, "rb") as f:
                found = index_pairs(f, left_out=left_out)
                size = (getattr(f, "size", None) or f.seek(0, 2)) if expected and url in expected else None
        except (FileNotFoundError, IsADirectoryError) as err:  # a listed shard that is not there
            raise FileNotFoundError(f"{key}: shard {err.filename or url} does not exist") from None
        except (tarfile.TarError, EOFError, ValueError) as err:  # cut short, gzip'd, empty, not a tar
            raise DataError(f"{key}: shard {url} cannot be read as a tar ({_first_line(err)}); `vlcurate verify` "
                            "on its run says what changed") from None
        except Exception as err:  # refused access, a network error: the store's, not the shard's
            raise DataError(f"{key}: shard {url} cannot be read ({_first_line(err)})") from None
        if size is not None and size != expected[url][0]:
            raise DataError(f"{key}: shard {url} has {size:,} bytes, its manifest says {expected[url][0]:,}: it "
                            "changed since the run (`vlcurate verify` on the run checks every file)")
        if verify and expected and url in expected and sha256_of(url) != expected[url][1]:
            raise DataError(f"{key}: shard {url} does not match its manifest's sha256 (data.verify_shards): it "
                            "changed since the run")
        entries.append(found)
        starts.append(starts[-1] + len(found))
    index = PairShardIndex(urls, entries, starts, left_out)
    if index.total == 0:
        raise DataError(f"{key}: the shards hold no image+caption sample" +
                        (f" ({counts_text(left_out)} left out)" if left_out else ""))
    if left_out and warn:
        log.warning("%s: %d record(s) of the shards are not image+caption pairs and are left out (%s)", key,
                    sum(left_out.values()), counts_text(left_out))
    return index


def _first_line(err: BaseException) -> str:
    text = " ".join(str(err).split())  # one line whatever the library put in it
    return f"{type(err).__name__}: {text[:200]}" if text else type(err).__name__


def counts_text(by_reason: dict[str, int]) -> str:
    """`reason n, reason n` in descending counts, for log lines and errors."""
    return ", ".join(f"{reason} {n:,}" for reason, n in sorted(by_reason.items(), key=lambda kv: -kv[1]))


def _refuse_special_file(url: str, key: str) -> None:
    """A FIFO or device named as a shard would block the reader forever (globs already skip them)."""
    if fsspec.utils.get_protocol(url) not in ("file", "local"):
        return
    path = fsspec.core.url_to_fs(url)[1]
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # missing: the open says so
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise DataError(f"{key}: {url} is not a regular file (a pipe or device); name shard files only")


def read_record(f, entry: PairEntry) -> Record | ImageProblem:
    """One image+caption pair from an open shard; raises on a caption that is not UTF-8."""
    data = read_span(f, entry.image)
    image = decode_image(data)
    if isinstance(image, ImageProblem):
        return image
    return Record(entry.key, [image], read_span(f, entry.caption).decode("utf-8"), [data])


def index_references(urls: list[str]) -> list[dict[str, Span]]:
    """Per shard, where each key's KEY.json is (one pass over the tar headers): evaluation's references."""
    spans = []
    for url in urls:
        found: dict[str, Span] = {}
        with fsspec.open(url, "rb") as f, open_tar(f, "r:") as tar:
            for member in all_members(tar):
                key, ext = split_member_name(member.name)
                if member.isfile() and ext == METADATA_EXT:
                    found[key] = (member.offset_data, member.size)
        spans.append(found)
    return spans


def references_of(metadata: bytes | None, caption: str) -> list[str]:
    """KEY.json's "references" (a non-empty list of strings, each at most MAX_CAPTION_CHARS; KEY.txt is
    the first), else [KEY.txt]."""
    try:
        refs = json.loads(metadata)["references"] if metadata and len(metadata) <= MAX_METADATA_BYTES else None
    except (ValueError, TypeError, KeyError, RecursionError):
        refs = None
    if isinstance(refs, list) and refs and all(isinstance(r, str) and r.strip() and len(r) <= MAX_CAPTION_CHARS
                                               for r in refs):
        return refs
    return [caption]


@dataclass(frozen=True)
class Skip:
    """A sample that could not be used: its reason (counted) and a line naming it (logged)."""

    reason: str
    text: str

    def __str__(self) -> str:
        return self.text


def _rng(seed: int, micro_step: int, slot: int) -> random.Random:
    digest = hashlib.blake2b(f"{seed}/{micro_step}/{slot}".encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


class TaskBatches(IterableDataset):
    """Yields dicts: inputs (ModelInputs), skipped (int), micro_step (int), tokens (int: loss tokens,
    counted from the Examples so the trainer never reads the device for them) and build_s (float:
    seconds this process spent reading, decoding, encoding and collating the batch: the data path's
    own speed, whoever waits for it); with keep_raw also records (the decoded Records, for
    evaluation) and where ((shard, index) of each).
    references: index_references(index.urls), to fill each Record's references (evaluation).
    storage_options: data.storage_options, for opening remote shards in whichever process reads them."""

    def __init__(self, index: PairShardIndex, task: Task, batch_size: int, seed: int, start: int = 0,
                 rank: int = 0, max_redraws: int = 100, keep_raw: bool = False,
                 references: list[dict[str, Span]] | None = None, storage_options: dict[str, Any] | None = None):
        self.index, self.task = index, task
        self.batch_size, self.seed = batch_size, seed
        self.start, self.rank, self.max_redraws = start, rank, max_redraws
        self.keep_raw = keep_raw
        self.references = references
        self.storage_options = storage_options or {}  # for remote shards (data.storage_options)
        self._files: dict[int, object] = {}

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        step = self.start + worker  # DataLoader takes batches from workers in turn: step order is kept
        while True:
            yield self.batch(step)
            step += workers

    def batch(self, micro_step: int) -> dict:
        started = time.perf_counter()
        examples, records, where, reasons, first = [], [], [], {}, None
        for slot in range(self.rank * self.batch_size, (self.rank + 1) * self.batch_size):
            rng = _rng(self.seed, micro_step, slot)
            for _ in range(self.max_redraws):
                position = self.index.locate(rng.randrange(self.index.total))
                drawn = self._encode(*position)
                if not isinstance(drawn, Skip):
                    break
                reasons[drawn.reason] = reasons.get(drawn.reason, 0) + 1
                first = first or drawn.text
            else:  # draws depend on (seed, step, slot) alone: a resume would stop here again
                raise DataError(f"{self.max_redraws} draws in a row could not be used at micro-step {micro_step} "
                                f"({counts_text(reasons)} in this batch; last: {drawn}): too few usable samples in "
                                "the shards; `vlcurate verify --deep` on their run finds the bad ones")
            examples.append(drawn[0])
            if self.keep_raw:  # full-size decoded images: ~270 MB each at 9000x9000, kept only for eval
                records.append(drawn[1])
            where.append(position)
        batch = {"inputs": self.task.collate(examples), "skipped": sum(reasons.values()), "micro_step": micro_step,
                 "tokens": sum(sum(e.loss_mask) for e in examples), "skipped_reasons": reasons, "first_skip": first}
        if self.keep_raw:
            batch["records"], batch["where"] = records, where
        batch["build_s"] = time.perf_counter() - started
        return batch

    def in_order(self) -> Iterator[dict]:
        """Every sample once, shard by shard in index order, batch_size positions at a time (the last
        chunk may be shorter): evaluation of a whole split, the same batches on every call. A sample
        that cannot be used is left out and counted as batch() counts its redraws (`skipped`,
        `skipped_reasons`, `first_skip`); a chunk with none left has inputs None. Always keeps records
        and where."""
        positions = [(s, i) for s, entries in enumerate(self.index.entries) for i in range(len(entries))]
        for start in range(0, len(positions), self.batch_size):
            examples, records, where, reasons, first = [], [], [], {}, None
            for position in positions[start:start + self.batch_size]:
                drawn = self._encode(*position)
                if isinstance(drawn, Skip):
                    reasons[drawn.reason] = reasons.get(drawn.reason, 0) + 1
                    first = first or drawn.text
                    continue
                examples.append(drawn[0])
                records.append(drawn[1])
                where.append(position)
            yield {"inputs": self.task.collate(examples) if examples else None, "skipped": sum(reasons.values()),
                   "skipped_reasons": reasons, "first_skip": first, "records": records, "where": where}

    def _encode(self, shard: int, i: int):
        """(Example, Record), or the Skip saying why the sample cannot be used."""
        entry = self.index.entries[shard][i]
        f = self._files.get(shard)
        if f is None:
            f = self._files[shard] = open_shard(self.index.urls[shard], self.storage_options)
        if entry.caption[1] > 4 * MAX_CAPTION_CHARS:  # a caption curation would have refused; not read
            return Skip("caption_too_long", f"{entry.key}: caption_too_long ({entry.caption[1]:,} bytes)")
        try:
            record = read_record(f, entry)
            if isinstance(record, ImageProblem):
                return Skip(record.reason, f"{entry.key}: {record.reason} ({record.detail})")
            if not record.text.strip():  # nothing to learn: the target would be EOS alone
                return Skip("caption_empty", f"{entry.key}: caption_empty")
            if len(record.text) > MAX_CAPTION_CHARS:
                return Skip("caption_too_long", f"{entry.key}: caption_too_long ({len(record.text):,} characters)")
            if self.references is not None:
                span = self.references[shard].get(entry.key)
                record.references = references_of(read_span(f, span) if span else None, record.text)
            return self.task.encode(record), record
        except UnicodeDecodeError as err:
            return Skip("caption_not_utf8", f"{entry.key}: caption_not_utf8 ({err})")
        except Exception as err:  # an image the transform refuses, a shard cut since: skipped, never fatal
            return Skip(f"error_{type(err).__name__}", f"{entry.key}: {_first_line(err)}")
