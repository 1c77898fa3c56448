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
import random
import time
from collections.abc import Iterator
from typing import Any

import fsspec
from torch.utils.data import IterableDataset, get_worker_info

from filters.image_checks import ImageProblem
from manifests.manifest import MANIFEST_NAME, read_manifest
from manifests.shard_format import (METADATA_EXT, PairEntry, PairShardIndex, Span, all_members, decode_image,
                                    index_pair_shards, open_tar, read_span, split_member_name)
from manifests.storage import glob_files, is_local, use_storage_options
from trainers.tasks.base import Record, Task


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


def build_index(urls: list[str], key: str = "data.shards") -> PairShardIndex:
    try:
        index = index_pair_shards(urls)
    except (FileNotFoundError, IsADirectoryError) as err:  # a listed shard that is not there
        raise FileNotFoundError(f"{key}: shard {err.filename or err} does not exist") from None
    if index.total == 0:
        raise ValueError("the shards hold no image+caption sample")
    return index


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
    """KEY.json's "references" (a non-empty list of strings; KEY.txt is the first), else [KEY.txt]."""
    try:
        refs = json.loads(metadata)["references"] if metadata else None
    except (ValueError, TypeError, KeyError):
        refs = None
    if isinstance(refs, list) and refs and all(isinstance(r, str) and r.strip() for r in refs):
        return refs
    return [caption]


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
        examples, records, where, skipped = [], [], [], 0
        for slot in range(self.rank * self.batch_size, (self.rank + 1) * self.batch_size):
            rng = _rng(self.seed, micro_step, slot)
            for _ in range(self.max_redraws):
                position = self.index.locate(rng.randrange(self.index.total))
                drawn = self._encode(*position)
                if not isinstance(drawn, str):
                    break
                skipped += 1
            else:
                raise RuntimeError(f"{self.max_redraws} draws in a row could not be used (last: {drawn}): "
                                   f"check the shards")
            examples.append(drawn[0])
            records.append(drawn[1])
            where.append(position)
        batch = {"inputs": self.task.collate(examples), "skipped": skipped, "micro_step": micro_step,
                 "tokens": sum(sum(e.loss_mask) for e in examples)}
        if self.keep_raw:
            batch["records"], batch["where"] = records, where
        batch["build_s"] = time.perf_counter() - started
        return batch

    def in_order(self) -> Iterator[dict]:
        """Every sample once, shard by shard in index order, batch_size positions at a time (the last
        chunk may be shorter): evaluation of a whole split, the same batches on every call. A sample
        that cannot be used is left out and counted (`skipped`, `problems`); a chunk with none left
        has inputs None. Always keeps records and where."""
        positions = [(s, i) for s, entries in enumerate(self.index.entries) for i in range(len(entries))]
        for start in range(0, len(positions), self.batch_size):
            examples, records, where, problems = [], [], [], []
            for position in positions[start:start + self.batch_size]:
                drawn = self._encode(*position)
                if isinstance(drawn, str):
                    problems.append(drawn)
                    continue
                examples.append(drawn[0])
                records.append(drawn[1])
                where.append(position)
            yield {"inputs": self.task.collate(examples) if examples else None, "skipped": len(problems),
                   "problems": problems, "records": records, "where": where}

    def _encode(self, shard: int, i: int):
        """(Example, Record), or why the sample was skipped."""
        entry = self.index.entries[shard][i]
        f = self._files.get(shard)
        if f is None:
            f = self._files[shard] = open_shard(self.index.urls[shard], self.storage_options)
        try:
            record = read_record(f, entry)
            if isinstance(record, ImageProblem):
                return f"{entry.key}: {record.reason} ({record.detail})"
            if self.references is not None:
                span = self.references[shard].get(entry.key)
                record.references = references_of(read_span(f, span) if span else None, record.text)
            return self.task.encode(record), record
        except Exception as err:  # a caption that is not UTF-8, an image the transform refuses: skipped, never fatal
            return f"{entry.key}: {type(err).__name__}: {err}"
