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
"""

from __future__ import annotations

import hashlib
import random

import fsspec
from torch.utils.data import IterableDataset, get_worker_info

from filters.image_checks import ImageProblem
from manifests.manifest import MANIFEST_NAME, read_manifest
from manifests.shard_format import PairEntry, PairShardIndex, decode_image, index_pair_shards, read_span
from manifests.storage import glob_files
from trainers.tasks.base import Record, Task


def shard_urls(spec: str) -> list[str]:
    """A run's manifest.json (its shard list), a brace pattern, or a glob."""
    if spec.endswith(MANIFEST_NAME):
        root = spec.rsplit("/", 1)[0]
        try:
            manifest = read_manifest(root)
        except FileNotFoundError:
            raise FileNotFoundError(f"data.shards {spec!r} does not exist (a curated run's manifest.json)") from None
        return [f"{root}/{s.name}" for s in manifest.shards]
    import braceexpand

    urls = []
    for pattern in braceexpand.braceexpand(spec):
        urls += glob_files(pattern) if any(c in pattern for c in "*?[") else [pattern]
    if not urls:
        raise FileNotFoundError(f"data.shards {spec!r} names no shard")
    return urls


def build_index(urls: list[str]) -> PairShardIndex:
    index = index_pair_shards(urls)
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


def _rng(seed: int, micro_step: int, slot: int) -> random.Random:
    digest = hashlib.blake2b(f"{seed}/{micro_step}/{slot}".encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


class TaskBatches(IterableDataset):
    """Yields dicts: inputs (ModelInputs), skipped (int), micro_step (int); with keep_raw also
    records (the decoded Records, for evaluation)."""

    def __init__(self, index: PairShardIndex, task: Task, batch_size: int, seed: int, start: int = 0,
                 rank: int = 0, max_redraws: int = 100, keep_raw: bool = False):
        self.index, self.task = index, task
        self.batch_size, self.seed = batch_size, seed
        self.start, self.rank, self.max_redraws = start, rank, max_redraws
        self.keep_raw = keep_raw
        self._files: dict[int, object] = {}

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        step = self.start + worker  # DataLoader takes batches from workers in turn: step order is kept
        while True:
            yield self.batch(step)
            step += workers

    def batch(self, micro_step: int) -> dict:
        examples, records, skipped = [], [], 0
        for slot in range(self.rank * self.batch_size, (self.rank + 1) * self.batch_size):
            rng = _rng(self.seed, micro_step, slot)
            for _ in range(self.max_redraws):
                drawn = self._encode(*self.index.locate(rng.randrange(self.index.total)))
                if not isinstance(drawn, str):
                    break
                skipped += 1
            else:
                raise RuntimeError(f"{self.max_redraws} draws in a row could not be used (last: {drawn}): "
                                   f"check the shards")
            examples.append(drawn[0])
            records.append(drawn[1])
        batch = {"inputs": self.task.collate(examples), "skipped": skipped, "micro_step": micro_step}
        if self.keep_raw:
            batch["records"] = records
        return batch

    def _encode(self, shard: int, i: int):
        """(Example, Record), or why the sample was skipped."""
        entry = self.index.entries[shard][i]
        f = self._files.get(shard)
        if f is None:
            f = self._files[shard] = fsspec.open(self.index.urls[shard], "rb").open()
        try:
            record = read_record(f, entry)
            if isinstance(record, ImageProblem):
                return f"{entry.key}: {record.reason} ({record.detail})"
            return self.task.encode(record), record
        except Exception as err:  # a caption that is not UTF-8, an image the transform refuses: skipped, never fatal
            return f"{entry.key}: {type(err).__name__}: {err}"
