"""CLIPScore stage: scores equal a direct open_clip computation, exact top fraction with ties,
clear errors for missing weights, undecodable images as rejections."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import apache_beam as beam
import numpy as np
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.util import assert_that, equal_to
from PIL import Image

from filters.sample import Sample
from filters.top_fraction import bin_of, keep_count
from manifests.manifest import read_manifest
from manifests.recipe import RecipeError, parse_recipe
from pipelines.drivers.curate import CurateError, curate
from pipelines.beam.top_fraction import KeepTopFraction, keep_above
from tests.model_inputs import jpeg, scene, write_records

CAPTIONS = ["a red square on a green field", "two blue boxes", "an orange scene with shapes",
            "a purple background", "yellow and violet rectangles", "a cyan picture"]


def _recipe(tiny_clip: dict, **clipscore) -> object:
    return parse_recipe({"name": "t", "stages": [{"clipscore": {"model": tiny_clip, "batch_size": 4, **clipscore}}],
                         "output": {"samples_per_shard": 5}})


def _shard_rows(root: Path) -> dict[str, dict]:
    rows = {}
    for shard in read_manifest(str(root)).shards:
        table = pq.read_table(root / shard.metadata.name)
        for row in table.to_pylist():
            rows[row["key"]] = row
    return rows


def test_pipeline_scores_equal_direct_open_clip(tiny_clip, tmp_path):
    import open_clip
    import torch

    images = [scene(i) for i in range(10)]
    captions = [CAPTIONS[i % len(CAPTIONS)] for i in range(10)]
    write_records(tmp_path / "in", [(f"k{i:02d}", jpeg(img), cap) for i, (img, cap) in enumerate(zip(images, captions))])
    curate(_recipe(tiny_clip), f"{tmp_path}/in/*.tar", str(tmp_path / "out"))

    model, _, preprocess = open_clip.create_model_and_transforms(tiny_clip["name"], pretrained=tiny_clip["pretrained"])
    tokenizer = open_clip.get_tokenizer(tiny_clip["name"])
    decoded = [Image.open(io.BytesIO(jpeg(img))).convert("RGB") for img in images]
    with torch.no_grad():
        img = model.encode_image(torch.stack([preprocess(d) for d in decoded]))
        txt = model.encode_text(tokenizer(captions))
    img, txt = img / img.norm(dim=-1, keepdim=True), txt / txt.norm(dim=-1, keepdim=True)
    direct = (img * txt).sum(-1).numpy()

    rows = _shard_rows(tmp_path / "out")
    assert sorted(rows) == [f"k{i:02d}" for i in range(10)]
    for i in range(10):
        row = rows[f"k{i:02d}"]
        assert json.loads(row["json"])["clip_score"] == pytest.approx(float(direct[i]), abs=1e-5)
        np.testing.assert_allclose(np.asarray(row["clip_image_embedding"], np.float32), img[i].numpy(), atol=1e-3)
        np.testing.assert_allclose(np.asarray(row["clip_text_embedding"], np.float32), txt[i].numpy(), atol=1e-3)
    m = read_manifest(str(tmp_path / "out"))
    (identity,) = [x for x in m.versions["models"] if x["stage"] == "clipscore"]
    assert identity["name"] == tiny_clip["name"] and len(identity["sha256"]) == 64


def _decide(samples: list[Sample], fraction: float | None, threshold: float | None, expected_kept: list[str]):
    expected_rejected = sorted({s.key for s in samples} - set(expected_kept))
    with beam.Pipeline("DirectRunner") as p:
        pcoll = p | beam.Create(samples)
        if fraction is not None:
            outputs = pcoll | KeepTopFraction("clip_score", fraction, "clipscore", "not_in_top_fraction")
        else:
            outputs = keep_above(pcoll, "clip_score", threshold, "clipscore", "below_threshold")
        assert_that(outputs.kept | "KeptKeys" >> beam.Map(lambda s: s.key), equal_to(expected_kept), label="kept")
        assert_that(outputs.rejected | "RejectedKeys" >> beam.Map(lambda r: r.key), equal_to(expected_rejected),
                    label="rejected")


def _scored(scores: dict[str, float]) -> list[Sample]:
    return [Sample(key=k, source="t", annotations={"clip_score": v}) for k, v in scores.items()]


@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.5, 0.75, 1.0])
def test_top_fraction_keeps_exactly_the_expected_keys_with_ties(fraction):
    rng = np.random.default_rng(3)
    scores = {f"k{i:03d}": float(np.round(rng.uniform(0.1, 0.4), 2)) for i in range(57)}  # rounding makes ties
    assert len(set(scores.values())) < len(scores)
    order = sorted(scores, key=lambda k: (-scores[k], k))
    expected = order[: keep_count(len(scores), fraction)]
    assert len(expected) == math.ceil(fraction * 57)
    _decide(_scored(scores), fraction, None, expected)


def test_top_fraction_all_equal_scores_keeps_smallest_keys():
    scores = {f"k{i}": 0.25 for i in range(10)}
    _decide(_scored(scores), 0.3, None, ["k0", "k1", "k2"])


def test_top_fraction_scores_across_many_bins():
    scores = {f"k{i:04d}": float(s) for i, s in enumerate(np.linspace(-1.0, 1.0, 1001))}
    assert bin_of(1.0) == 0 and bin_of(-1.0) == bin_of(-0.99999) > 0
    order = sorted(scores, key=lambda k: (-scores[k], k))
    _decide(_scored(scores), 0.25, None, order[:251])


def test_threshold_keeps_scores_at_or_above():
    scores = {"a": 0.3, "b": 0.25, "c": 0.2499, "d": -0.1}
    _decide(_scored(scores), None, 0.25, ["a", "b"])


def test_undecodable_images_and_missing_captions_become_rejections(tiny_clip, tmp_path):
    good = jpeg(scene(1))
    write_records(tmp_path / "in", [
        ("a-good", good, "a scene"), ("b-corrupt", good[:200], "truncated jpeg"), ("c-empty", b"", "zero bytes"),
        ("d-nocaption", jpeg(scene(2)), None), ("e-notimage", b"<html>not an image</html>", "html"),
    ])
    curate(_recipe(tiny_clip, threshold=-1.0), f"{tmp_path}/in/*.tar", str(tmp_path / "out"))
    m = read_manifest(str(tmp_path / "out"))
    assert m.counts.input == 5 == m.counts.kept + m.counts.rejected
    reasons = {r["key"]: (r["stage"], r["reason"]) for f in m.rejected
               for r in pq.read_table(tmp_path / "out" / f.name).to_pylist()}
    assert reasons == {"b-corrupt": ("clipscore", "image_undecodable"), "c-empty": ("clipscore", "image_empty"),
                       "d-nocaption": ("clipscore", "caption_missing"),
                       "e-notimage": ("clipscore", "image_undecodable")}
    assert sorted(_shard_rows(tmp_path / "out")) == ["a-good"]


@pytest.mark.parametrize("model, message", [
    ({"name": "ViT-B-32"}, "clipscore.model.pretrained is not set"),
    ({"name": "ViT-B-32", "pretrained": "/nonexistent/weights.pt"}, "neither a file nor a pretrained tag"),
    ({"name": "no-such-arch", "pretrained": "/nonexistent/weights.pt"}, "clipscore.model.config_dir"),
])
def test_missing_weights_fail_before_the_pipeline_with_the_recipe_keys(model, message, tmp_path):
    write_records(tmp_path / "in", [("a", jpeg(scene(1)), "a scene")])
    with pytest.raises(CurateError) as err:
        curate(_recipe(model), f"{tmp_path}/in/*.tar", str(tmp_path / "out"))
    assert message in str(err.value) and "pretrained" in str(err.value)
    assert not (tmp_path / "out" / "shards").exists() or not any((tmp_path / "out" / "shards").iterdir())


def test_recipe_rules_for_model_stages(tiny_clip):
    with pytest.raises(RecipeError, match="threshold or top_fraction, not both"):
        _recipe(tiny_clip, threshold=0.2, top_fraction=0.3)
    with pytest.raises(RecipeError, match="stages.0.semantic_dedup: semantic_dedup needs clip_image_embedding, which no stage before it provides: put one of \\(clipscore, tmars\\)"):
        parse_recipe({"name": "t", "stages": [{"semantic_dedup": {}}]})
    with pytest.raises(RecipeError, match="tmars.model differs"):
        parse_recipe({"name": "t", "stages": [{"clipscore": {"model": tiny_clip}},
                                              {"tmars": {"model": {**tiny_clip, "device": "cuda"}}}]})
    recipe = parse_recipe({"name": "t", "stages": [{"clipscore": {"model": tiny_clip}}, {"tmars": {"top_fraction": 0.5}}]})
    assert recipe.stages[1].config.model == recipe.stages[0].config.model
    with pytest.raises(RecipeError, match="max_text_fraction"):
        parse_recipe({"name": "t", "stages": [{"tmars": {}}]})
    # without a model: what is wrong, not the rule after it; and why a tmars before dedup is not enough
    with pytest.raises(RecipeError, match="threshold/top_fraction apply to the masked CLIP score: set tmars.model"):
        parse_recipe({"name": "t", "stages": [{"tmars": {"threshold": 0.2}}]})
    with pytest.raises(RecipeError, match="the tmars stage before it does not provide it as configured"):
        parse_recipe({"name": "t", "stages": [{"tmars": {"max_text_fraction": 0.3}}, {"semantic_dedup": {}}]})


def test_after_heuristics_broken_images_are_rejected_upstream_only(tiny_clip, pool_dir, tmp_path):
    recipe = parse_recipe({"name": "t", "stages": [
        {"heuristics": {"complexity": {"enabled": False}}},
        {"clipscore": {"model": tiny_clip, "batch_size": 16, "top_fraction": 0.5}}]})
    curate(recipe, f"{pool_dir}/shards/*.tar", str(tmp_path / "out"))
    m = read_manifest(str(tmp_path / "out"))
    assert m.counts.input == m.counts.kept + m.counts.rejected
    by_stage = {f.stage: f for f in m.funnel}
    assert set(by_stage["clipscore"].reasons) == {"not_in_top_fraction"}
    assert {"image_truncated", "image_empty", "image_too_many_pixels"} <= set(by_stage["heuristics"].reasons)
    scored = by_stage["clipscore"].input
    assert by_stage["clipscore"].kept == math.ceil(0.5 * scored)


def test_reduced_precision_scores_match_fp32(tiny_clip):
    """precision bf16 runs (open_clip keeps some parameters in fp32: inputs follow the precision)."""
    from filters.clip_model import ClipSpec
    from filters.clipscore import SCORE, ClipScorer
    from filters.sample import Sample

    samples = lambda: [Sample(f"k{i}", "s", jpeg(scene(i)), "jpg", "a scene") for i in range(4)]  # noqa: E731
    scores = {}
    for precision in ("fp32", "bf16"):
        spec = ClipSpec(tiny_clip["name"], tiny_clip["pretrained"], tiny_clip["config_dir"], precision=precision)
        scores[precision] = [o.annotations[SCORE] for o in ClipScorer(spec).score_samples(samples())]
    assert max(abs(a - b) for a, b in zip(scores["fp32"], scores["bf16"])) < 0.05


def test_an_unreachable_hub_fails_in_seconds(tmp_path, monkeypatch):
    """A tag not in the cache, with the hub unreachable (here: a closed loopback port), fails fast
    naming the fix, instead of after the hub client's minute of retries."""
    import socket
    import time

    from filters.clip_model import ClipSpec, ClipWeightsError, resolve_checkpoint

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    started = time.perf_counter()
    with pytest.raises(ClipWeightsError, match="cannot be reached from this machine; set clipscore.model.pretrained"):
        resolve_checkpoint(ClipSpec("ViT-B-32", "laion2b_s34b_b79k", cache_dir=str(tmp_path)))
    assert time.perf_counter() - started < 10


def test_a_checkpoint_rewritten_in_place_is_loaded_anew(tmp_path):
    """load_clip shares one model per spec in a process, but a checkpoint retrained into the same
    path (the experiment's filtering CLIP) must not be served from that cache."""
    import os

    from filters.clip_model import ClipSpec, load_clip
    from tests.tiny_clip import write_clip_checkpoint

    block = write_clip_checkpoint(tmp_path, seed=0)
    spec = ClipSpec(block["name"], block["pretrained"], block["config_dir"])
    first = load_clip(spec)
    assert load_clip(spec) is first
    stat = os.stat(block["pretrained"])
    write_clip_checkpoint(tmp_path, seed=1)
    os.utime(block["pretrained"], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # coarse clocks
    second = load_clip(spec)
    assert second is not first and second.identity["sha256"] != first.identity["sha256"]
