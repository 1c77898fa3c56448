"""The grounding stage through Beam: a colour-segmentation detector plugged in as an adapter proves
the boxes and tokens land on the right phrases (known shapes at known places); tiny OWL-ViT and
OWLv2 models built here load through the same path users use (random weights: plumbing only)."""

from __future__ import annotations

import io
import json
import tarfile

import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageDraw

from filters.sample import Sample
from manifests.recipe import parse_recipe
from manifests.shard_format import pair_rows, write_pair_tar
from pipelines.drivers.curate import CurateError, curate, preflight_stages
from tests.colour_detector import COLOURS
from tests.test_grounding_text import DATA_NOUN, INDEX_NOUN

ADAPTER = {"path": "colour", "adapter": "tests.colour_detector:ColourDetector"}


def scene(width, height, shapes, exif_orientation=None) -> bytes:
    """White picture with coloured rectangles at known pixel boxes; optionally stored rotated with an
    EXIF orientation tag, so only an EXIF-aware decode sees the shapes where the caption says."""
    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for colour, box in shapes:
        draw.rectangle([box[0], box[1], box[2] - 1, box[3] - 1], fill=COLOURS[colour])
    buffer = io.BytesIO()
    if exif_orientation == 6:  # displayed = stored rotated 90 degrees clockwise
        stored = image.transpose(Image.Transpose.ROTATE_90)
        exif = Image.Exif()
        exif[0x0112] = 6
        stored.save(buffer, format="PNG", exif=exif.tobytes())
    else:
        image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def wordnet_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("wordnet")
    (directory / "data.noun").write_text(DATA_NOUN)
    (directory / "index.noun").write_text(INDEX_NOUN)
    return str(directory)


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    samples = [
        Sample("a_two", "t", scene(200, 100, [("red", (20, 10, 60, 50)), ("blue", (120, 40, 180, 90))]), "png",
               "a red square and a blue box on a table", None),
        Sample("b_rotated", "t", scene(100, 200, [("green", (10, 150, 50, 190))], exif_orientation=6), "png",
               "a green block near the bottom", None),
        Sample("c_none", "t", scene(100, 100, [("yellow", (10, 10, 30, 30))]), "png", "an idea of freedom", None),
        Sample("d_missing", "t", scene(100, 100, []), "png", "a red ball", None),
    ]
    root = tmp_path_factory.mktemp("pool")
    with open(root / "00000.tar", "wb") as out:
        write_pair_tar(out, samples, pair_rows(samples))
    return root


def recipe(wordnet_dir, **grounding):
    return parse_recipe({"name": "grit-test", "stages": [{"grounding": {
        "detector": ADAPTER, "wordnet_dir": wordnet_dir, "batch_size": 3, **grounding}}]})


@pytest.fixture(scope="module")
def run(pool, wordnet_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    result = curate(recipe(wordnet_dir), str(pool / "*.tar"), str(out))
    members = {}
    with tarfile.open(out / result.manifest.shards[0].name) as tar:
        for m in tar:
            members[m.name] = tar.extractfile(m).read()
    return result, out, members


def test_boxes_land_on_the_phrases_that_name_them(run):
    result, _, members = run
    funnel = next(f for f in result.manifest.funnel if f.stage == "grounding")
    assert funnel.reasons == {"no_grounded_phrase": 2} and funnel.kept == 2  # no colour / no red in the picture
    layout = json.loads(members["a_two.json"])
    chunks = {g["phrase"]: g for g in layout["grounding"] if g["kind"] == "chunk"}
    assert set(chunks) == {"a red square", "a blue box"}  # "a table" is not found: no table colour
    assert chunks["a red square"]["boxes"] == [[0.1, 0.1, 0.3, 0.5, 0.95]]
    assert chunks["a blue box"]["boxes"] == [[0.6, 0.4, 0.9, 0.9, 0.95]]
    caption = "a red square and a blue box on a table"
    assert all(caption[g["start"]:g["end"]] == g["phrase"] for g in layout["grounding"])
    refs = [g for g in layout["grounding"] if g["kind"] == "ref_exp"]
    assert [r["phrase"] for r in refs] == ["a blue box on a table"] and refs[0]["boxes"] == chunks["a blue box"]["boxes"]


def test_exif_rotated_images_are_boxed_as_displayed(run):
    _, _, members = run
    layout = json.loads(members["b_rotated.json"])
    (green,) = [g for g in layout["grounding"] if g["kind"] == "chunk"]
    assert green["boxes"] == [[0.1, 0.75, 0.5, 0.95, 0.95]]  # displayed 100x200, shape at (10,150)-(50,190)


def test_long_images_are_downscaled_before_detection_and_boxed_the_same(wordnet_dir, tmp_path):
    """Detectors pad to a square at full size (a 1x20000 image took 22 GB in OWLv2's processor); the
    stage hands them at most max_side, and the normalized boxes do not change."""
    samples = [Sample("long", "t", scene(1600, 100, [("red", (160, 10, 480, 50))]), "png", "a red bar", None)]
    with open(tmp_path / "00000.tar", "wb") as out:
        write_pair_tar(out, samples, pair_rows(samples))
    boxes = {}
    for side in (4096, 400):
        result = curate(recipe(wordnet_dir, max_side=side), str(tmp_path / "00000.tar"), str(tmp_path / f"o{side}"))
        with tarfile.open(tmp_path / f"o{side}" / result.manifest.shards[0].name) as tar:
            layout = json.loads(tar.extractfile("long.json").read())
        boxes[side] = [g["boxes"] for g in layout["grounding"] if g["kind"] == "chunk"][0][0]
    assert boxes[4096][:4] == [0.1, 0.1, 0.3, 0.5]
    assert all(abs(a - b) <= 0.03 for a, b in zip(boxes[400][:4], boxes[4096][:4])), boxes  # pixel rounding at 400x25


def test_renderings_are_members_and_parse_back(run):
    from transformers.models.kosmos2.processing_kosmos2 import clean_text_and_extract_entities_with_bboxes

    from filters.grounding_render import parse_paligemma

    _, out, members = run
    text, entities = clean_text_and_extract_entities_with_bboxes(members["a_two.kosmos2.txt"].decode())
    assert text == "a red square and a blue box on a table"
    assert [e[0] for e in entities] == ["a red square", "a blue box on a table"]  # the longest rendered
    parsed = parse_paligemma(members["a_two.paligemma.txt"].decode())
    assert [label for label, _ in parsed] == ["a red square", "a blue box on a table"]
    assert all(abs(a - b) <= 1 / 1024 for a, b in zip(parsed[0][1], [0.1, 0.1, 0.3, 0.5]))
    table = pq.read_table(out / "metadata" / "00000.parquet").to_pylist()
    row = next(r for r in table if r["key"] == "a_two")
    assert sorted(row["noun_chunks"]) == [[0, 12, 0.1, 0.1, 0.3, 0.5, 0.95], [17, 27, 0.6, 0.4, 0.9, 0.9, 0.95]]
    assert row["ref_exps"] == [[17, 38, 0.6, 0.4, 0.9, 0.9, 0.95]]


def test_annotate_mode_keeps_everything(pool, wordnet_dir, tmp_path):
    result = curate(recipe(wordnet_dir, mode="annotate"), str(pool / "*.tar"), str(tmp_path / "out"))
    assert result.manifest.counts.kept == 4


def test_a_missing_detector_stops_the_run_in_preflight(wordnet_dir, tmp_path):
    empty = tmp_path / "detector"
    empty.mkdir()
    (empty / "config.json").write_text(json.dumps({"model_type": "owlv2"}))
    for path, message in ((str(tmp_path / "nowhere"), "cannot be loaded"), (str(empty), "holds no weights")):
        spec = parse_recipe({"name": "t", "stages": [{"grounding": {"detector": {"path": path},
                                                                      "wordnet_dir": wordnet_dir}}]})
        with pytest.raises(CurateError, match=f"grounding.detector.path .*{message}"):
            preflight_stages(spec)
    no_wordnet = parse_recipe({"name": "t", "stages": [{"grounding": {"detector": ADAPTER,
                                                                        "wordnet_dir": str(tmp_path)}}]})
    with pytest.raises(CurateError, match="WordNet files missing .* apt-get install wordnet-base"):
        preflight_stages(no_wordnet)


@pytest.mark.parametrize("family", ["owlv2", "owlvit", "grounding-dino"])
def test_tiny_transformers_detectors_load_and_run_through_the_stage(family, pool, wordnet_dir, tmp_path):
    from tests.tiny_detectors import build_grounding_dino, build_owl

    path = build_grounding_dino(tmp_path / "models") if family == "grounding-dino" else build_owl(tmp_path / "models", family)
    spec = parse_recipe({"name": "t", "stages": [{"grounding": {
        "detector": {"path": str(path)}, "wordnet_dir": wordnet_dir, "mode": "annotate", "box_threshold": 0.001}}]})
    (model,) = preflight_stages(spec).models
    assert model["name"] == family and len(model["sha256"]) == 64
    result = curate(spec, str(pool / "*.tar"), str(tmp_path / "out"))
    assert result.manifest.counts.kept == 4 and result.manifest.counts.rejected == 0
    with tarfile.open(tmp_path / "out" / result.manifest.shards[0].name) as tar:
        layouts = {m.name: json.loads(tar.extractfile(m).read()) for m in tar if m.name.endswith(".json")}
    # random weights put boxes anywhere (OWLv2's often in the padding below a wide image, clipped away):
    # what is checked is the plumbing, every sample annotated and every box inside its image
    assert all("grounding" in layout and "noun_chunks" in layout for layout in layouts.values())
    boxes = [box for layout in layouts.values() for g in layout["grounding"] for box in g["boxes"]]
    assert all(0 <= v <= 1 for box in boxes for v in box[:4]) and all(box[0] < box[2] and box[1] < box[3] for box in boxes)


def test_grounding_dino_queries_map_to_their_token_spans(tmp_path):
    from transformers import AutoProcessor

    from filters.detectors import _query_spans
    from tests.tiny_detectors import build_grounding_dino

    processor = AutoProcessor.from_pretrained(build_grounding_dino(tmp_path))
    ids = processor.tokenizer("a red cube. blue sky.")["input_ids"]
    tokens = processor.tokenizer.convert_ids_to_tokens(ids)
    spans = _query_spans(ids, processor.tokenizer, 2)
    assert ["".join(tokens[a:b]).replace("##", "") for a, b in spans] == ["aredcube", "bluesky"]


def test_the_report_shows_grounded_samples_with_their_tokens(run):
    import html

    _, out, members = run
    page = (out / "report.html").read_text()
    assert '<h2 id="grounding">Grounded samples</h2>' in page
    assert html.escape(members["a_two.kosmos2.txt"].decode()) in page  # the Kosmos-2 text beside the boxed image
