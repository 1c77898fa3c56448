"""Training batches from curated webdataset shards, as a pure function of the step.

Every slot j of the global batch at micro-step s is drawn by a generator seeded with (seed, s, j):
shards are resampled in proportion to their sample counts (sampling with replacement over the
whole dataset). Rank r of W fills slots [r*B, (r+1)*B), so W processes see exactly the samples one
process sees with a global batch of W*B, and a run resumed at micro-step s sees exactly the batches
an uninterrupted run saw from s on, whatever the number of DataLoader workers. Random access into
the tars uses a member index built once (each member's data offset and size), read through
fsspec, so shards can live on any filesystem (one ranged read per sample: local or cached shards
train fastest).
Decode, transform and tokenisation run in DataLoader workers; a sample that fails to decode is
skipped, replaced by another draw, and counted.
"""

from __future__ import annotations

import bisect
import hashlib
import io
import random
import tarfile
from dataclasses import dataclass

import fsspec
import torch
from PIL import Image
from torch.utils.data import IterableDataset, get_worker_info

from manifests.manifest import MANIFEST_NAME, read_manifest
from manifests.storage import glob_files

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")


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


@dataclass
class ShardIndex:
    urls: list[str]
    samples: list[list[tuple[tuple[int, int], tuple[int, int]]]]  # per shard: (image span, caption span)
    starts: list[int]  # cumulative sample counts

    @property
    def total(self) -> int:
        return self.starts[-1]

    def locate(self, i: int) -> tuple[int, int]:
        shard = bisect.bisect_right(self.starts, i) - 1
        return shard, i - self.starts[shard]


def build_index(urls: list[str]) -> ShardIndex:
    samples, starts = [], [0]
    for url in urls:
        members: dict[str, dict[str, tuple[int, int]]] = {}
        with fsspec.open(url, "rb") as f, tarfile.open(fileobj=f, mode="r:") as tar:
            for m in tar:
                if not m.isfile():
                    continue
                base = m.name.rsplit("/", 1)[-1]
                key, _, ext = base.partition(".")
                members.setdefault(key, {})[ext.lower()] = (m.offset_data, m.size)
        pairs = []
        for key in sorted(members):
            parts = members[key]
            image = next((parts[e] for e in IMAGE_EXTS if e in parts), None)
            if image is not None and "txt" in parts:
                pairs.append((image, parts["txt"]))
        samples.append(pairs)
        starts.append(starts[-1] + len(pairs))
    if starts[-1] == 0:
        raise ValueError("the shards hold no image+caption sample")
    return ShardIndex(urls, samples, starts)


def _rng(seed: int, micro_step: int, slot: int) -> random.Random:
    digest = hashlib.blake2b(f"{seed}/{micro_step}/{slot}".encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


class CaptionBatches(IterableDataset):
    """Yields dicts: pixels (B,3,H,W), ids (B,T), mask (B,T), skipped (int), micro_step (int)."""

    def __init__(self, index: ShardIndex, preprocess, tokenizer, batch_size: int, max_tokens: int, seed: int,
                 start: int = 0, rank: int = 0, max_redraws: int = 100, keep_raw: bool = False):
        self.index, self.preprocess, self.tokenizer = index, preprocess, tokenizer
        self.batch_size, self.max_tokens, self.seed = batch_size, max_tokens, seed
        self.start, self.rank, self.max_redraws = start, rank, max_redraws
        self.keep_raw = keep_raw  # evaluation: also return the captions and image bytes
        self._files: dict[int, object] = {}

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        step = self.start + worker  # DataLoader takes batches from workers in turn: step order is kept
        while True:
            yield self.batch(step)
            step += workers

    def batch(self, micro_step: int) -> dict:
        pixels, captions, images, skipped = [], [], [], 0
        for slot in range(self.rank * self.batch_size, (self.rank + 1) * self.batch_size):
            rng = _rng(self.seed, micro_step, slot)
            for _ in range(self.max_redraws):
                sample = self._read(*self.index.locate(rng.randrange(self.index.total)))
                if sample is not None:
                    break
                skipped += 1
            else:
                raise RuntimeError(f"{self.max_redraws} draws in a row failed to decode: check the shards")
            pixels.append(sample[0])
            captions.append(sample[1])
            images.append(sample[2])
        eos = self.tokenizer.eos_token or ""
        enc = self.tokenizer([c + eos for c in captions], padding=True, truncation=True,
                             max_length=self.max_tokens, add_special_tokens=False, return_tensors="pt")
        batch = {"pixels": torch.stack(pixels), "ids": enc["input_ids"], "mask": enc["attention_mask"],
                 "skipped": skipped, "micro_step": micro_step}
        if self.keep_raw:
            batch.update(captions=captions, images=images)
        return batch

    def _read(self, shard: int, i: int):
        (img_off, img_size), (txt_off, txt_size) = self.index.samples[shard][i]
        f = self._files.get(shard)
        if f is None:
            f = self._files[shard] = fsspec.open(self.index.urls[shard], "rb").open()
        try:
            f.seek(img_off)
            data = f.read(img_size)
            image = Image.open(io.BytesIO(data)).convert("RGB")
            f.seek(txt_off)
            caption = f.read(txt_size).decode("utf-8")
            return self.preprocess(image), caption, data if self.keep_raw else None
        except Exception:  # corrupt image or caption: skipped and counted, never fatal
            return None
