"""The mini-DataComp pool (pipelines/experiment/pool.py): deterministic, noisy in the documented
proportions, heavy-tailed, its truth hidden from curation, and its held-out / clean sets balanced
and disjoint from it. Ends with DataComp's basic filter run on a small pool."""

from __future__ import annotations

import hashlib
import io
import json
import math
import statistics
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from filters.caption_rules import BoilerplateMatcher, count_words
from filters.image_checks import ImageProblem
from filters.language import LanguageIdentifier
from filters.model_files import default_lid_model_path
from manifests.manifest import read_manifest
from manifests.recipe import load_recipe
from manifests.shard_format import decode_image
from pipelines.experiment.pool import (CONCEPT_WEIGHTS, HEAD_CONCEPTS, HEAD_WEIGHT, NOISE_PROPORTIONS, TAIL_WEIGHT,
                                       write_clean, write_heldout, write_pool)
from pipelines.experiment.scenes import CONCEPTS, read_concepts

ROOT = Path(__file__).parents[1]
N, SEED = 1500, 3
SIGMAS = 4  # binomial tolerance: a correct generator fails a check about once in 16,000


def read_shards(root: Path) -> dict[str, dict[str, bytes]]:
    records: dict[str, dict[str, bytes]] = {}
    for path in sorted((root / "shards").glob("*.tar")):
        with tarfile.open(path) as tar:
            for member in tar:
                key, ext = member.name.split(".", 1)
                records.setdefault(key, {})[ext] = tar.extractfile(member).read()
    return records


def image_of(record: dict[str, bytes]) -> bytes:
    return record["jpg"] if "jpg" in record else record["png"]


def within_binomial(count: int, n: int, p: float) -> bool:
    return abs(count - n * p) <= SIGMAS * math.sqrt(n * p * (1 - p)) + 1


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    root = tmp_path_factory.mktemp("pool")
    write_pool(root, N, SEED, per_shard=500)
    truth = {row["key"]: row for row in pq.read_table(root / "truth.parquet").to_pylist()}
    return root, read_shards(root), truth


def of(truth: dict, noise: str) -> list[str]:
    return [k for k, row in truth.items() if row["noise"] == noise]


def test_same_seed_gives_identical_bytes_another_seed_does_not(tmp_path):
    def files(seed: int, name: str) -> dict[str, bytes]:
        write_pool(tmp_path / name, 80, seed, per_shard=30)
        return {str(p.relative_to(tmp_path / name)): p.read_bytes() for p in sorted((tmp_path / name).rglob("*.*"))}

    first, again, other = files(1, "a"), files(1, "b"), files(2, "c")
    assert first == again
    assert first.keys() == other.keys() and first["shards/00000.tar"] != other["shards/00000.tar"]
    with tarfile.open(tmp_path / "a/shards/00000.tar") as tar:
        assert {m.mtime for m in tar} == {0}


def test_noise_proportions_are_the_documented_ones(pool):
    _, _, truth = pool
    assert math.isclose(sum(NOISE_PROPORTIONS.values()), 1.0) and min(NOISE_PROPORTIONS.values()) >= 0.03
    counts = Counter(row["noise"] for row in truth.values())
    assert set(counts) == set(NOISE_PROPORTIONS)
    for noise, share in NOISE_PROPORTIONS.items():
        assert within_binomial(counts[noise], N, share), (noise, counts[noise], N * share)


def test_head_concepts_are_a_hundred_times_the_tail(pool):
    _, _, truth = pool
    counts = Counter((row["colour"], row["shape"]) for row in truth.values())
    total = sum(CONCEPT_WEIGHTS.values())
    tail = [c for c in CONCEPTS if c not in HEAD_CONCEPTS]
    assert len(HEAD_CONCEPTS) == 4 and HEAD_WEIGHT / TAIL_WEIGHT == 100
    for concept in HEAD_CONCEPTS:
        assert within_binomial(counts[concept], N, HEAD_WEIGHT / total), (concept, counts[concept])
    tail_count, p_tail = sum(counts[c] for c in tail), len(tail) * TAIL_WEIGHT / total
    assert within_binomial(tail_count, N, p_tail)
    # The ratio of per-concept means, with bounds from the same binomial spread of the tail total.
    spread = SIGMAS * math.sqrt(N * p_tail * (1 - p_tail)) + 1
    ratio = ((N - tail_count) / len(HEAD_CONCEPTS)) / (tail_count / len(tail))
    low = ((N - N * p_tail - spread) / 4) / ((N * p_tail + spread) / len(tail))
    high = ((N - N * p_tail + spread) / 4) / ((N * p_tail - spread) / len(tail))
    assert low <= ratio <= high and low < 100 < high, (low, ratio, high)


def test_truth_covers_every_key_once_and_nothing_in_the_shards_tells_it(pool):
    root, records, truth = pool
    rows = pq.read_table(root / "truth.parquet").column("key").to_pylist()
    assert len(rows) == len(set(rows)) == N and set(rows) == set(records)
    assert not list((root / "shards").glob("truth*"))
    fields = {tuple(sorted(json.loads(r["json"]))) for r in records.values()}
    assert len(fields) == 1 and "references" not in next(iter(fields))  # same fields whatever the noise
    leaks = set(NOISE_PROPORTIONS) | {"noise", "duplicate", "broken", "misalign", "text_fraction", "truncated"}
    for key, record in records.items():
        meta = json.loads(record["json"])
        assert meta["key"] == key and meta["caption"] == record["txt"].decode()
        assert meta["url"].rsplit("/", 1)[1] in (f"{key}.jpg", f"{key}.png")
        text = (record["json"] + record["txt"]).decode().lower()
        assert not [word for word in leaks if word in text], key
    # broken images look like any other: a .jpg member, like most of the pool
    assert all("jpg" in records[k] for k in of(truth, "broken_image"))
    assert 0 < sum("png" in r for r in records.values()) < N / 4


def test_broken_images_do_not_decode_and_the_others_do(pool):
    _, records, truth = pool
    broken = of(truth, "broken_image")
    assert {truth[k]["broken"] for k in broken} == {"truncated", "empty", "not_an_image"}
    assert all(isinstance(decode_image(records[k]["jpg"]), ImageProblem) for k in broken)
    others = [k for k in truth if truth[k]["noise"] != "broken_image"][:300]
    for key in others:
        img = decode_image(image_of(records[key]))
        assert isinstance(img, Image.Image) and img.size == (truth[key]["width"], truth[key]["height"])
        assert min(img.size) >= 200 and max(img.size) / min(img.size) <= 3.0  # DataComp's size rules pass


def test_text_in_image_samples_are_mostly_text_repeating_the_caption(pool):
    _, records, truth = pool
    text = of(truth, "text_in_image")
    fractions = [truth[k]["text_fraction"] for k in text]
    assert min(fractions) >= 0.2 and statistics.median(fractions) >= 0.4
    assert all(truth[k]["text_fraction"] is None for k in truth if truth[k]["noise"] != "text_in_image")
    for key in text:  # the caption is a normal description, of the concept in truth
        found = read_concepts(records[key]["txt"].decode())
        assert (found["colour"], found["shape"]) == (truth[key]["colour"], truth[key]["shape"])


def test_misaligned_captions_describe_another_concept(pool):
    _, records, truth = pool
    for key in of(truth, "misaligned"):
        row, found = truth[key], read_concepts(records[key]["txt"].decode())
        assert (found["colour"], found["shape"]) == (row["caption_colour"], row["caption_shape"])
        assert (row["caption_colour"], row["caption_shape"]) != (row["colour"], row["shape"])


def _thumb(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB").resize((16, 16), Image.Resampling.BOX), float)


def test_near_duplicates_are_close_to_an_earlier_clean_image_but_not_byte_identical(pool):
    _, records, truth = pool
    duplicates = of(truth, "near_duplicate")
    digests = Counter(hashlib.sha256(image_of(r)).digest() for k, r in records.items()
                      if truth[k]["noise"] != "broken_image")
    assert max(digests.values()) == 1  # exact dedup finds nothing
    clean = of(truth, "clean")
    thumbs = {k: _thumb(image_of(records[k])) for k in clean}
    ranks = []
    for key in duplicates:
        original = truth[key]["duplicate_of"]
        assert truth[original]["noise"] == "clean" and original < key
        assert (truth[key]["colour"], truth[key]["shape"]) == (truth[original]["colour"], truth[original]["shape"])
        mine = _thumb(records[key]["jpg"])
        distance = {k: np.abs(t - mine).sum() for k, t in thumbs.items()}
        ranks.append(sum(d < distance[original] for d in distance.values()))
    # Its original is among the nearest 5% of clean images, and most often the nearest: the head
    # concepts also have natural look-alikes (same colours, count, texture), as web pools do.
    assert max(ranks) < 0.05 * len(clean) and sum(r == 0 for r in ranks) >= 0.8 * len(ranks)


def test_other_language_captions_are_identified_as_their_language(pool):
    _, records, truth = pool
    keys = of(truth, "other_language")
    guesses = LanguageIdentifier(default_lid_model_path()).predict([records[k]["txt"].decode() for k in keys])
    assert {truth[k]["language"] for k in keys} == {"de", "fr", "es"}
    right = sum(g.label == truth[k]["language"] for k, g in zip(keys, guesses))
    assert right >= 0.9 * len(keys), Counter((truth[k]["language"], g.label) for k, g in zip(keys, guesses))


def test_boilerplate_and_short_captions_are_what_the_caption_rules_target(pool):
    _, records, truth = pool
    matcher = BoilerplateMatcher()
    for key in of(truth, "boilerplate"):  # too few words, or a default boilerplate pattern
        caption = records[key]["txt"].decode()
        assert count_words(caption) < 3 or matcher.match(caption) is not None, caption
    assert all(count_words(records[k]["txt"].decode()) <= 2 for k in of(truth, "short_caption"))


def test_heldout_and_clean_sets_are_balanced_and_disjoint_from_the_pool(pool, tmp_path):
    root, records, _ = pool
    n = 2 * len(CONCEPTS)
    write_heldout(tmp_path / "heldout", n, SEED, per_shard=40)
    write_clean(tmp_path / "clean", n, SEED, per_shard=40)
    held, clean = read_shards(tmp_path / "heldout"), read_shards(tmp_path / "clean")
    for name, records_of in (("heldout", held), ("clean", clean)):
        concepts = Counter()
        for record in records_of.values():
            found = read_concepts(record["txt"].decode())
            concepts[found["colour"], found["shape"]] += 1
        assert concepts == Counter({c: 2 for c in CONCEPTS}), name
        truth = pq.read_table(tmp_path / name / "truth.parquet").to_pylist()
        assert Counter((r["colour"], r["shape"]) for r in truth) == concepts
    for record in held.values():
        meta = json.loads(record["json"])
        assert len(meta["references"]) == 3 and record["txt"].decode() == meta["references"][0]
    keys = [set(records), set(held), set(clean)]
    assert not (keys[0] & keys[1] or keys[0] & keys[2] or keys[1] & keys[2])
    digests = [{hashlib.sha256(image_of(r)).digest() for r in s.values()} for s in (records, held, clean)]
    assert not (digests[0] & digests[1] or digests[0] & digests[2] or digests[1] & digests[2])


def test_datacomp_basic_filter_catches_the_caption_and_decode_noise_only(tmp_path):
    from pipelines.drivers.curate import curate

    write_pool(tmp_path / "pool", 200, SEED + 1, per_shard=100)
    truth = {r["key"]: r for r in pq.read_table(tmp_path / "pool/truth.parquet").to_pylist()}
    curate(load_recipe(ROOT / "manifests/recipes/datacomp_basic.yaml"), f"{tmp_path}/pool/shards/*.tar",
           str(tmp_path / "out"))
    manifest = read_manifest(tmp_path / "out")
    rejected = {row["key"] for f in manifest.rejected for row in pq.read_table(tmp_path / "out" / f.name).to_pylist()}
    assert manifest.counts.input == 200 and rejected <= set(truth)

    def rejected_share(noise: str) -> float:
        keys = of(truth, noise)
        assert keys, noise
        return sum(k in rejected for k in keys) / len(keys)

    for noise in ("short_caption", "other_language", "broken_image"):
        assert rejected_share(noise) >= 0.8, noise
    # Boilerplate of 1-2 words fails the word count; the rest needs a boilerplate rule, which
    # DataComp's basic filter does not have.
    captions = {k: r["txt"].decode() for k, r in read_shards(tmp_path / "pool").items()}
    short = [k for k in of(truth, "boilerplate") if count_words(captions[k]) < 3]
    assert short and all(k in rejected for k in short) and rejected_share("boilerplate") >= 0.5
    # What the basic filter is not meant to catch, it keeps: the other filters' work is left.
    for noise in ("clean", "misaligned", "text_in_image", "near_duplicate"):
        assert rejected_share(noise) <= 0.2, noise
