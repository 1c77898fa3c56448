"""T-MARS: the real PP-OCRv4 detector finds rendered text, masking removes it, text-free images are
untouched, and the stage records original score, masked score and text fraction per sample."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from filters.sample import Sample
from filters.text_regions import TextRegionDetector, TextRegionMasker
from filters.tmars import MASKED_SCORE, TEXT_FRACTION, TmarsScorer
from manifests.manifest import read_manifest
from manifests.recipe import parse_recipe
from pipelines.drivers.curate import curate
from tests.model_inputs import jpeg, scene, with_text, write_records

BACKGROUNDS = [(235, 235, 225), (30, 40, 90), (200, 60, 60), "gradient", "scene"]
WORDS = ["SALE 50%", "Golden Dragon", "TERIYAKI", "Open 24h", "PRICE 2.98"]


def _image(i: int) -> np.ndarray:
    background = BACKGROUNDS[i % len(BACKGROUNDS)]
    background = scene(i) if background == "scene" else background
    return np.asarray(with_text(background, WORDS[i % len(WORDS)]))


@pytest.fixture(scope="module")
def detector() -> TextRegionDetector:
    return TextRegionDetector(side=256)


def _text_area(detector, masker, pixels) -> float:
    return masker.mask(pixels, detector.detect(pixels)).text_fraction


@pytest.mark.parametrize("i", range(len(BACKGROUNDS)))
def test_masking_removes_at_least_90_percent_of_detected_text(detector, i):
    masker = TextRegionMasker()
    pixels = _image(i)
    before = masker.mask(pixels, detector.detect(pixels))
    assert before.regions >= 1 and before.text_fraction > 0.02, "the detector must find the rendered text"
    after = _text_area(detector, masker, before.pixels)
    assert after <= 0.10 * before.text_fraction


@pytest.mark.parametrize("i", range(6))
def test_images_without_text_keep_every_pixel(detector, i):
    pixels = np.asarray(scene(i, size=(320, 240)))
    boxes = detector.detect(pixels)
    masked = TextRegionMasker().mask(pixels, boxes)
    assert len(boxes) == 0 and masked.regions == 0 and masked.text_fraction == 0.0
    assert masked.pixels.tobytes() == pixels.tobytes()


def test_fill_is_the_mean_colour_of_the_ring_around_the_region():
    pixels = np.zeros((40, 40, 3), np.uint8)
    pixels[:, :20] = (200, 0, 0)
    pixels[:, 20:] = (0, 0, 100)
    pixels[15:25, 15:25] = (255, 255, 255)  # the "text"
    box = np.array([[[15, 15], [24, 15], [24, 24], [15, 24]]], np.float32)
    masked = TextRegionMasker(dilate_px=0, ring_px=2).mask(pixels, box)
    filled = masked.pixels[15:25, 15:25].reshape(-1, 3)
    assert (filled == filled[0]).all()
    assert tuple(filled[0]) == (100, 0, 50)  # half red, half blue ring around the square
    assert masked.text_fraction == pytest.approx(100 / 1600)
    untouched = np.ones((40, 40), bool)
    untouched[15:25, 15:25] = False
    assert (masked.pixels[untouched] == pixels[untouched]).all()


def test_scorer_records_scores_and_reuses_nothing_it_should_not(tiny_clip):
    from filters.clip_model import ClipSpec

    spec = ClipSpec(tiny_clip["name"], tiny_clip["pretrained"], tiny_clip.get("config_dir"), stage="tmars")
    scorer = TmarsScorer(spec=spec)
    samples = [Sample("text", "t", image=jpeg(with_text((235, 235, 225), "SALE 50%")), caption="sale"),
               Sample("plain", "t", image=jpeg(scene(3, size=(320, 240))), caption="a scene"),
               Sample("broken", "t", image=b"\xff\xd8\xff broken", caption="x")]
    outcomes = scorer.process_batch(samples)
    text, plain, broken = outcomes
    assert broken.reason == "image_undecodable" and broken.stage == "tmars"
    assert text.annotations[TEXT_FRACTION] > 0.02 and text.annotations[MASKED_SCORE] != text.annotations["clip_score"]
    assert plain.annotations[TEXT_FRACTION] == 0.0
    assert plain.annotations[MASKED_SCORE] == plain.annotations["clip_score"]


def test_a_model_that_gives_nan_rejects_each_record_instead_of_failing_ranking(tmp_path):
    """A NaN score reached the top-fraction histogram and failed the run (int(nan))."""
    import torch

    from filters.clip_model import ClipSpec
    from filters.top_fraction import BINS, bin_of
    from tests.tiny_clip import write_clip_checkpoint

    block = write_clip_checkpoint(tmp_path / "nan_clip", content_sensitive=True)
    checkpoint = torch.load(block["pretrained"], weights_only=True)
    checkpoint["state_dict"]["visual.proj"] = torch.full_like(checkpoint["state_dict"]["visual.proj"], float("nan"))
    torch.save(checkpoint, block["pretrained"])
    scorer = TmarsScorer(spec=ClipSpec(block["name"], block["pretrained"], block.get("config_dir"), stage="tmars"))
    samples = [Sample("text", "t", image=jpeg(with_text((235, 235, 225), "SALE 50%")), caption="sale"),
               Sample("plain", "t", image=jpeg(scene(3, size=(320, 240))), caption="a scene")]
    outcomes = scorer.process_batch(samples)
    assert [(o.stage, o.reason) for o in outcomes] == [("tmars", "score_not_finite")] * 2
    assert bin_of(float("nan")) == BINS - 1  # and ranking itself never fails on one


def test_text_area_rule_without_clip_through_the_pipeline(tmp_path):
    records = [(f"text{i}", jpeg(with_text((235, 235, 225), WORDS[i], font_size=60)), "a sign") for i in range(3)]
    records += [(f"plain{i}", jpeg(scene(i, size=(320, 240))), "a scene") for i in range(3)]
    records += [("corrupt", b"\x89PNG broken", "x")]
    write_records(tmp_path / "in", records)
    recipe = parse_recipe({"name": "t", "stages": [{"tmars": {"max_text_fraction": 0.05, "batch_size": 4}}]})
    curate(recipe, f"{tmp_path}/in/*.tar", str(tmp_path / "out"))
    m = read_manifest(str(tmp_path / "out"))
    assert m.counts.input == 7 == m.counts.kept + m.counts.rejected
    reasons = {r["key"]: r["reason"] for f in m.rejected for r in pq.read_table(tmp_path / "out" / f.name).to_pylist()}
    assert reasons == {"text0": "text_area_too_large", "text1": "text_area_too_large",
                       "text2": "text_area_too_large", "corrupt": "image_undecodable"}
    kept = [json.loads(j) for s in m.shards for j in pq.read_table(tmp_path / "out" / s.metadata.name)["json"].to_pylist()]
    assert sorted(k["key"] for k in kept) == ["plain0", "plain1", "plain2"]
    assert all(k[TEXT_FRACTION] == 0.0 for k in kept)
    assert any(x["name"] == "PP-OCRv4-det" and len(x["sha256"]) == 64 for x in m.versions["models"])


def test_tmars_after_clipscore_keeps_top_masked_scores(tiny_clip, tmp_path):
    records = [(f"text{i}", jpeg(with_text(scene(i), WORDS[i])), WORDS[i].lower()) for i in range(4)]
    records += [(f"plain{i}", jpeg(scene(i + 4, size=(320, 240))), "a scene") for i in range(4)]
    write_records(tmp_path / "in", records)
    recipe = parse_recipe({"name": "t", "stages": [{"clipscore": {"model": tiny_clip, "batch_size": 4}},
                                                   {"tmars": {"top_fraction": 0.5, "batch_size": 3}}]})
    curate(recipe, f"{tmp_path}/in/*.tar", str(tmp_path / "out"))
    m = read_manifest(str(tmp_path / "out"))
    assert (m.counts.input, m.counts.kept, m.counts.rejected) == (8, 4, 4)
    kept = [json.loads(j) for s in m.shards for j in pq.read_table(tmp_path / "out" / s.metadata.name)["json"].to_pylist()]
    rejected = [r for f in m.rejected for r in pq.read_table(tmp_path / "out" / f.name).to_pylist()]
    assert {r["reason"] for r in rejected} == {"masked_not_in_top_fraction"}
    lowest_kept = min(k[MASKED_SCORE] for k in kept)
    assert all(float(r["detail"].split()[0]) <= lowest_kept for r in rejected)
    assert all({"clip_score", MASKED_SCORE, TEXT_FRACTION} <= set(k) for k in kept)
    # The report draws the cutoff the data set, and clipscore's score once (tmars reuses it).
    page = (tmp_path / "out" / "report.html").read_text()
    assert f"top_fraction 0.5: cutoff = {lowest_kept:g}: 50.0% below" in page
    assert page.count('alt="clip_score"') == 1 and page.count(f'alt="{MASKED_SCORE}"') == 1
