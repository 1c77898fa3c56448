"""The mini-DataComp data: a noisy, heavy-tailed pool, a clean balanced held-out set, and a clean
balanced set for training a filtering CLIP (DFN), all generated from a seed.

Each set is shards in img2dataset's layout (OUT/shards/NNNNN.tar holding KEY.jpg|png, KEY.txt,
KEY.json, plus NNNNN.parquet) and OUT/urls.parquet. What every sample really is goes to
OUT/truth.parquet, outside the shards: curation reads OUT/shards/*.tar and never sees it, and no
KEY.json, URL or key says which noise a sample carries. The three sets draw from separate seed
streams (the set's name is part of every random.Random seed string), so they never share a scene
draw; keys carry the set's letter (p, h, c), so they never share a key either.

Same (n, seed) -> byte-identical files: fixed encoder settings, tar members with mtime 0, one
random.Random per sample and purpose seeded by a string (deterministic across runs and machines).
"""

from __future__ import annotations

import json
import random
import tarfile
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from manifests.shard_format import add_member
from pipelines.experiment import noise
from pipelines.experiment.scenes import CONCEPTS, Scene, captions, random_scene, render

# What share of the pool each kind of sample is, drawn i.i.d. per sample (so counts are binomial),
# and which curation step is meant to catch it. Every noise type is >= 6% so that a filter's
# precision and recall on it are measurable on a few thousand samples.
NOISE_PROPORTIONS: dict[str, float] = {
    "clean": 0.46,           # the caption describes the image: what every filter should keep
    "misaligned": 0.12,      # the caption of another pool image (another concept): CLIP score / DFN filtering
    "text_in_image": 0.08,   # the image is mostly the caption printed large, the object small: T-MARS
    "near_duplicate": 0.08,  # an earlier clean image cropped, rescaled, jittered, re-encoded, same or
                             # paraphrased caption: not byte-identical, so semantic dedup, not exact dedup
    "short_caption": 0.06,   # 1-2 words: DataComp's basic filter (>= 3 words, > 5 chars)
    "other_language": 0.08,  # the caption in German/French/Spanish: fastText lid.176 (English only)
    "boilerplate": 0.06,     # file names, "stock photo", "click here to enlarge": word count, boilerplate rule
    "broken_image": 0.06,    # truncated JPEG, zero bytes, an HTML error page: the header / decode checks
}
# The heavy tail MetaCLIP's balancing targets: each pool sample's main concept is drawn with weight
# 100 for these four and 1 for the other 44, so the head holds 400/444 = 90% of the pool and each head
# concept is 100x as frequent as each tail concept. Spread over four colours and four shapes, so no
# colour or shape word alone is the head. The held-out and clean sets are balanced over all 48.
HEAD_CONCEPTS = (("red", "circle"), ("blue", "square"), ("green", "triangle"), ("yellow", "star"))
HEAD_WEIGHT, TAIL_WEIGHT = 100, 1
CONCEPT_WEIGHTS = {c: HEAD_WEIGHT if c in HEAD_CONCEPTS else TAIL_WEIGHT for c in CONCEPTS}

TEMPLATE_WEIGHTS = (0.6, 0.2, 0.2)  # which of scenes.captions a pool/clean caption uses (all of them, so a
                                    # paraphrase never marks a near duplicate)
PNG_SHARE = 0.1  # the rest JPEG, as on the web
JPEG_QUALITY = 90
MIN_SIDE, MAX_SIDE, MAX_ASPECT = 200, 400, 2.0  # all within DataComp's size rules (>= 200, aspect <= 3)
URL_BASE = "http://images.mini-datacomp.invalid"


def _rng(stream: str, seed: int, *parts: object) -> random.Random:
    """One generator per (set, seed, sample, purpose): a sample's pixels do not depend on how many
    random numbers another sample used, and "pool" / "heldout" / "clean" can never collide."""
    return random.Random("/".join(("mini-datacomp", stream, str(seed), *map(str, parts))))


def _size(rng: random.Random) -> tuple[int, int]:
    short = rng.randint(MIN_SIDE, 320)
    long = min(MAX_SIDE, round(short * rng.uniform(1.0, MAX_ASPECT)))
    return (long, short) if rng.random() < 0.5 else (short, long)


@dataclass
class _Planned:
    """One pool sample before its pixels: cheap, so the whole pool is planned first (misaligned and
    near-duplicate samples refer to other samples)."""

    index: int
    noise: str
    scene: Scene
    size: tuple[int, int]
    fmt: str
    caption: str  # the English description of this sample's image
    other: int | None = None  # misaligned: whose caption; near_duplicate: whose image


def _plan(n: int, seed: int) -> list[_Planned]:
    rng = _rng("pool", seed)
    labels = rng.choices(list(NOISE_PROPORTIONS), weights=list(NOISE_PROPORTIONS.values()), k=n)
    concepts = rng.choices(CONCEPTS, weights=[CONCEPT_WEIGHTS[c] for c in CONCEPTS], k=n)
    plan = []
    for i in range(n):
        r = _rng("pool", seed, i, "scene")
        scene = random_scene(r, concepts[i])
        size, fmt = _size(r), "PNG" if r.random() < PNG_SHARE else "JPEG"
        caption = r.choices(captions(scene), weights=TEMPLATE_WEIGHTS)[0]
        plan.append(_Planned(i, labels[i], scene, size, fmt, caption))
    clean_so_far: list[int] = []
    for p in plan:  # near duplicates copy an *earlier* clean image (dedup keeps whichever of the two
        # scores higher with CLIP, so it may drop the original: results.dedup_pairs counts either way)
        r = _rng("pool", seed, p.index, "link")
        if p.noise == "near_duplicate":
            if not clean_so_far:  # only possible for the first few samples
                p.noise = "clean"
            else:
                original = plan[r.choice(clean_so_far)]
                refs = captions(original.scene)
                caption = original.caption if r.random() < 0.5 else r.choice([c for c in refs if c != original.caption])
                plan[p.index] = replace(p, scene=original.scene, size=original.size, fmt="JPEG", caption=caption,
                                        other=original.index)
        if plan[p.index].noise == "clean":
            clean_so_far.append(p.index)
    for p in plan:  # misaligned: a caption of another pool image whose concept differs
        if p.noise == "misaligned":
            r = _rng("pool", seed, p.index, "link")
            others = (r.randrange(n) for _ in range(100))
            p.other = next((j for j in others if plan[j].scene.concept != p.scene.concept), None)
            if p.other is None:  # a pool of one concept (tiny n): nothing to misalign with
                p.noise = "clean"
    return plan


def _pool_sample(p: _Planned, plan: list[_Planned], seed: int, per_shard: int) -> tuple[bytes, str, str, dict]:
    """(image bytes, extension, caption, truth row) of one planned sample."""
    rng = _rng("pool", seed, p.index, "noise")
    truth: dict[str, Any] = {"noise": p.noise, "colour": p.scene.main.colour, "shape": p.scene.main.shape,
                             "caption_colour": p.scene.main.colour, "caption_shape": p.scene.main.shape,
                             "duplicate_of": None, "text_fraction": None, "language": None, "broken": None}
    caption, fmt = p.caption, p.fmt
    source = plan[p.other] if p.noise == "near_duplicate" else p
    img = render(source.scene, _rng("pool", seed, source.index, "render"), source.size)
    quality = JPEG_QUALITY
    if p.noise == "misaligned":
        caption = plan[p.other].caption
        truth["caption_colour"], truth["caption_shape"] = plan[p.other].scene.concept
    elif p.noise == "text_in_image":
        img, truth["text_fraction"] = noise.text_image(caption, p.scene, p.size, rng)
    elif p.noise == "near_duplicate":
        img = noise.near_duplicate(img, rng, MIN_SIDE)
        quality, truth["duplicate_of"] = rng.randint(70, 86), _key("p", p.other, per_shard)
    elif p.noise == "short_caption":
        caption = noise.short_caption(p.scene, rng)
    elif p.noise == "other_language":
        truth["language"] = rng.choice(noise.LANGUAGES)
        caption = noise.translate(p.scene, truth["language"])
    elif p.noise == "boilerplate":
        caption = noise.boilerplate(rng)
    if p.noise in ("short_caption", "boilerplate"):  # says nothing a concept could be read from
        truth["caption_colour"] = truth["caption_shape"] = None
    data = noise.encode(img, "JPEG" if p.noise == "broken_image" else fmt, quality)
    if p.noise == "broken_image":
        data, truth["broken"] = noise.broken(data, rng)
    ext = "png" if fmt == "PNG" and p.noise != "broken_image" else "jpg"
    return data, ext, caption, truth | {"width": img.width, "height": img.height}


def _key(prefix: str, i: int, per_shard: int) -> str:
    return f"{prefix}{i // per_shard:05d}{i % per_shard:04d}"  # img2dataset's shard+index key, set letter first


def _meta(key: str, ext: str, caption: str, width: int, height: int) -> dict[str, Any]:
    """KEY.json as img2dataset writes it; nothing in it says what kind of sample this is."""
    return {"url": f"{URL_BASE}/{key}.{ext}", "key": key, "caption": caption, "status": "success",
            "error_message": None, "width": width, "height": height, "original_width": width,
            "original_height": height}


class _ShardWriter:
    """Samples in order into NNNNN.tar (+ NNNNN.parquet of the KEY.json rows), per_shard each."""

    def __init__(self, out: Path, per_shard: int):
        self.folder, self.per_shard = out / "shards", per_shard
        self.folder.mkdir(parents=True, exist_ok=True)
        self.rows: list[dict[str, Any]] = []
        self.open_rows: list[dict[str, Any]] = []
        self.tar: tarfile.TarFile | None = None
        self.shards = 0

    def add(self, key: str, ext: str, image: bytes, meta: dict[str, Any]) -> None:
        if self.tar is None:
            self.tar = tarfile.open(self.folder / f"{self.shards:05d}.tar", "w", format=tarfile.PAX_FORMAT)
        add_member(self.tar, f"{key}.{ext}", image)
        add_member(self.tar, f"{key}.txt", meta["caption"].encode())
        add_member(self.tar, f"{key}.json", json.dumps(meta, sort_keys=True, ensure_ascii=False).encode())
        self.rows.append(meta)
        self.open_rows.append(meta)
        if len(self.open_rows) == self.per_shard:
            self._close()

    def _close(self) -> None:
        if self.tar is not None:
            self.tar.close()
            pq.write_table(pa.Table.from_pylist(self.open_rows), self.folder / f"{self.shards:05d}.parquet")
            self.tar, self.open_rows, self.shards = None, [], self.shards + 1

    def finish(self, truth: list[dict[str, Any]]) -> None:
        self._close()
        out = self.folder.parent
        pq.write_table(pa.Table.from_pylist([{"key": r["key"], "url": r["url"], "caption": r["caption"]}
                                             for r in self.rows]), out / "urls.parquet")
        pq.write_table(pa.Table.from_pylist(truth), out / "truth.parquet")


def write_pool(out_dir: str | Path, n: int, seed: int = 0, per_shard: int = 1000) -> dict[str, Any]:
    """The noisy pool: OUT/shards/*.tar for curation, OUT/truth.parquet (key, noise, colour, shape of
    the image, caption_colour/caption_shape the caption names or null, duplicate_of, text_fraction,
    language, broken kind, width, height) for scoring curation."""
    if per_shard > 10_000:
        raise ValueError("per_shard must fit the key's 4 index digits")
    plan = _plan(n, seed)
    writer, truth = _ShardWriter(Path(out_dir), per_shard), []
    for p in plan:
        key = _key("p", p.index, per_shard)
        image, ext, caption, row = _pool_sample(p, plan, seed, per_shard)
        writer.add(key, ext, image, _meta(key, ext, caption, row["width"], row["height"]))
        truth.append({"key": key, **row})
    writer.finish(truth)
    return {"records": n, "shards": writer.shards, "noise": dict(Counter(r["noise"] for r in truth)),
            "head_share": sum((r["colour"], r["shape"]) in HEAD_CONCEPTS for r in truth) / max(n, 1)}


def _write_balanced(out_dir: str | Path, n: int, seed: int, stream: str, per_shard: int,
                    references: bool) -> dict[str, Any]:
    """n clean samples whose concepts cycle through all 48 (counts differ by at most one), in a
    seeded order; one caption each, or every reference caption in KEY.json's "references"."""
    concepts = [CONCEPTS[i % len(CONCEPTS)] for i in range(n)]
    _rng(stream, seed).shuffle(concepts)
    writer, truth = _ShardWriter(Path(out_dir), per_shard), []
    for i, concept in enumerate(concepts):
        r = _rng(stream, seed, i, "scene")
        scene = random_scene(r, concept)
        size, fmt = _size(r), "PNG" if r.random() < PNG_SHARE else "JPEG"
        refs = captions(scene)
        caption = refs[0] if references else r.choices(refs, weights=TEMPLATE_WEIGHTS)[0]
        img = render(scene, _rng(stream, seed, i, "render"), size)
        key, ext = _key(stream[0], i, per_shard), fmt.lower().replace("jpeg", "jpg")
        meta = _meta(key, ext, caption, *size) | ({"references": refs} if references else {})
        writer.add(key, ext, noise.encode(img, fmt, JPEG_QUALITY), meta)
        truth.append({"key": key, "colour": scene.main.colour, "shape": scene.main.shape, "count": scene.count,
                      "background": scene.background, "texture": scene.texture})
    writer.finish(truth)
    return {"records": n, "shards": writer.shards, "concepts": len(set(concepts))}


def write_heldout(out_dir: str | Path, n: int, seed: int = 0, per_shard: int = 1000) -> dict[str, Any]:
    """The evaluation set: clean, balanced over the 48 concepts, KEY.txt the first reference and
    KEY.json "references" all three; never given to curation or training."""
    return _write_balanced(out_dir, n, seed, "heldout", per_shard, references=True)


def write_clean(out_dir: str | Path, n: int, seed: int = 0, per_shard: int = 1000) -> dict[str, Any]:
    """Clean, balanced pairs to train the filtering CLIP on (DFN), disjoint from pool and held-out."""
    return _write_balanced(out_dir, n, seed, "clean", per_shard, references=False)
