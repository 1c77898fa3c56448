"""The experiment's filtering CLIP: trains (loss falls, deterministic per seed), loads through the
clipscore stage in a real curate run like downloaded weights (hash in the manifest), and reports
zero-shot accuracy over the scene concepts."""

from __future__ import annotations

import io
import json
import random
import tarfile

import pytest

from filters.model_files import file_sha256
from manifests.manifest import read_manifest
from manifests.recipe import parse_recipe
from pipelines.drivers.curate import curate
from manifests.shard_format import add_member
from pipelines.experiment.filter_clip import (CLIP_CONFIG, CLIP_NAME, train_filter_clip, write_clip_config,
                                              zero_shot_accuracy)
from pipelines.experiment.scenes import CONCEPTS, captions, random_scene, render

# A tiny version of the real config (same towers, tokenizer and vocabulary; far fewer FLOPs), so a
# few steps take a second or two on a shared CPU (one thread: tiny ops gain nothing from a second one).
TINY = {"embed_dim": 32,
        "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 1, "head_width": 16},
        "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
STEPS = 25


def write_scene_shards(folder, n, seed, size=64, per_shard=16, balanced=False) -> str:
    """A small clean set straight from scenes.py (KEY.jpg + KEY.txt, the first reference caption),
    as pool.py's write_clean lays it out but small and square; returns the tars' glob.
    balanced: the concepts in turn, as the held-out set is."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for start in range(0, n, per_shard):
        with tarfile.open(folder / f"{start // per_shard:05d}.tar", "w") as tar:
            for i in range(start, min(n, start + per_shard)):
                scene = random_scene(rng, CONCEPTS[i % len(CONCEPTS)] if balanced else None)
                buffer = io.BytesIO()
                render(scene, rng, (size, size)).save(buffer, "JPEG", quality=90)
                add_member(tar, f"{i:06d}.jpg", buffer.getvalue())
                add_member(tar, f"{i:06d}.txt", captions(scene)[0].encode())
    return f"{folder}/*.tar"


def _train(data, out, seed=0, **kw):
    return train_filter_clip(data, out, steps=STEPS, batch_size=16, seed=seed, config=TINY,
                             name="test-filter-clip", lr=3e-3, threads=1, **kw)


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    return write_scene_shards(tmp_path_factory.mktemp("clean"), 48, seed=1)


@pytest.fixture(scope="module")
def trained(clean, tmp_path_factory):
    return _train(clean, tmp_path_factory.mktemp("clip"))


def test_training_lowers_the_contrastive_loss(trained):
    stats = trained["stats"]
    assert stats["pairs"] == 48 and stats["steps"] == STEPS
    assert stats["last_loss"] < 0.8 * stats["first_loss"]


def test_same_seed_same_checkpoint_bytes(clean, trained, tmp_path):
    again = _train(clean, tmp_path / "again")
    assert file_sha256(again["pretrained"]) == file_sha256(trained["pretrained"])
    other = _train(clean, tmp_path / "other", seed=1)
    assert file_sha256(other["pretrained"]) != file_sha256(trained["pretrained"])


def test_checkpoint_scores_in_a_curate_run_and_the_manifest_records_its_hash(trained, tmp_path):
    block = {k: v for k, v in trained.items() if k != "stats"}
    pool = write_scene_shards(tmp_path / "pool", 12, seed=5, per_shard=6)
    recipe = parse_recipe({"name": "t", "stages": [{"clipscore": {"model": block, "batch_size": 8}}],
                           "output": {"samples_per_shard": 20}})
    curate(recipe, pool, str(tmp_path / "out"))
    m = read_manifest(str(tmp_path / "out"))
    assert m.counts.input == 12 == m.counts.kept
    (identity,) = [x for x in m.versions["models"] if x["stage"] == "clipscore"]
    assert identity["name"] == "test-filter-clip"
    assert identity["sha256"] == file_sha256(block["pretrained"])


def test_zero_shot_accuracy_reports_fractions(trained, tmp_path):
    heldout = write_scene_shards(tmp_path / "heldout", 48, seed=9, balanced=True)
    result = zero_shot_accuracy(trained, heldout)
    assert result["n"] == 48 and result["chance"] == pytest.approx(1 / 48)
    for key in ("accuracy", "colour_accuracy", "shape_accuracy"):
        assert 0.0 <= result[key] <= 1.0
    assert result["accuracy"] <= min(result["colour_accuracy"], result["shape_accuracy"])
    for key in ("matched_cosine", "shuffled_cosine"):
        assert -1.0 <= result[key] <= 1.0


def test_default_config_is_an_open_clip_config_with_the_default_tokenizer(tmp_path):
    import open_clip

    path = write_clip_config(tmp_path)
    assert path.name == f"{CLIP_NAME}.json" and json.loads(path.read_text()) == CLIP_CONFIG
    open_clip.add_model_config(tmp_path)
    tokenizer = open_clip.get_tokenizer(CLIP_NAME)
    assert isinstance(tokenizer, open_clip.tokenizer.SimpleTokenizer)
    assert tuple(tokenizer(["a large red star on a striped blue background"]).shape) == (
        1, CLIP_CONFIG["text_cfg"]["context_length"])


@pytest.mark.skipif("not __import__('torch').cuda.is_available()", reason="needs a GPU")
def test_trains_on_cuda(clean, tmp_path):
    result = _train(clean, tmp_path / "cuda", device="cuda")
    assert result["stats"]["last_loss"] < result["stats"]["first_loss"]
    assert zero_shot_accuracy(result, clean, device="cuda")["n"] == 48
