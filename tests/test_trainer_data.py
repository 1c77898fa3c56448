"""The trainer reads shards as curation does (manifests/shard_format.py): images upright as the
heuristic stage measured them (EXIF orientation applied), and samples keyed by their full member
path, so `a/0001` and `b/0001` in one tar are two samples with their own captions."""

from __future__ import annotations

import io
import tarfile

import pytest
import torch
from PIL import Image

from filters.image_checks import ImageHeader, read_header
from tests.model_inputs import jpeg, write_records
from trainers.data import DataError, TaskBatches, build_index, read_record
from trainers.tasks import CaptioningTask

RED, BLUE = (230, 20, 20), (20, 40, 220)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    from tests.tiny_llm import write_tiny_llm

    return AutoTokenizer.from_pretrained(write_tiny_llm(tmp_path_factory.mktemp("llm")))


class Seen:
    """A preprocess transform that records the PIL images the trainer hands it."""

    def __init__(self):
        self.images: list[Image.Image] = []

    def __call__(self, image: Image.Image) -> torch.Tensor:
        self.images.append(image)
        return torch.zeros(3, 8, 8)


def _sideways_photo() -> bytes:
    """Stored 60 wide x 40 high with a red block at its top-left; EXIF Orientation 6 says "rotate
    90 degrees clockwise to display", as phones store portrait photos: upright it is 40 x 60 with
    the red block at the top-right."""
    stored = Image.new("RGB", (60, 40), BLUE)
    stored.paste(RED, (0, 0, 16, 16))
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", quality=95, exif=exif.tobytes())
    return buffer.getvalue()


def _close(pixel, colour) -> bool:
    return all(abs(a - b) < 40 for a, b in zip(pixel, colour))


def test_exif_rotated_photo_is_trained_upright_at_the_size_curation_measured(tmp_path, tokenizer):
    photo = _sideways_photo()
    header = read_header(photo)
    assert isinstance(header, ImageHeader) and (header.width, header.height) == (40, 60)
    # The heuristic stage's own measurement of the same bytes (its size rules run on these numbers).
    from filters.heuristics import HeuristicFilter
    from filters.sample import Sample
    from pipelines.stages.heuristics import HeuristicsConfig

    rules = HeuristicFilter(HeuristicsConfig(image={"min_side": 1}, language={"enabled": False},
                                             complexity={"enabled": False}, boilerplate={"enabled": False}))
    (measured,) = rules.filter_batch([Sample("phone0001", "x.tar", photo, "jpg", "a red square on a blue background")])
    assert (measured.annotations["image_width"], measured.annotations["image_height"]) == (40, 60)
    shard = write_records(tmp_path, [("phone0001", photo, "a red square on a blue background")])
    seen = Seen()
    batches = TaskBatches(build_index([shard]), CaptioningTask(tokenizer, seen), batch_size=2, seed=0)
    batch = batches.batch(0)
    assert batch["skipped"] == 0 and len(seen.images) == 2
    for image in seen.images:  # what the vision transform receives
        assert image.mode == "RGB" and image.size == (header.width, header.height)
        assert _close(image.getpixel((40 - 8, 8)), RED)  # top-right, where an upright viewer sees it
        assert _close(image.getpixel((8, 8)), BLUE) and _close(image.getpixel((8, 60 - 8)), BLUE)


def _tar(path, members: list[tuple[str, bytes]]) -> str:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return str(path)


def test_same_file_name_in_two_directories_is_two_samples(tmp_path, tokenizer):
    captions = {"a/0001": "a red circle on a blue background", "b/0001": "a green star on a white background"}
    colours = {"a/0001": RED, "b/0001": BLUE}
    shard = _tar(tmp_path / "00000.tar", [
        (f"{key}.{ext}", jpeg(Image.new("RGB", (32, 32), colours[key])) if ext == "jpg" else captions[key].encode())
        for key in captions for ext in ("jpg", "txt")])
    index = build_index([shard])
    assert index.total == 2 and [e.key for e in index.entries[0]] == ["a/0001", "b/0001"]
    with open(shard, "rb") as f:
        records = {e.key: read_record(f, e) for e in index.entries[0]}
    for key, record in records.items():
        assert record.text == captions[key] and _close(record.images[0].getpixel((16, 16)), colours[key])

    seen = Seen()
    task = CaptioningTask(tokenizer, seen)
    batch = TaskBatches(index, task, batch_size=16, seed=0, keep_raw=True).batch(0)
    assert {r.key for r in batch["records"]} == set(captions)  # 16 draws from 2 samples see both
    prompt = len(task.before) + len(task.after)
    for row, record in enumerate(batch["records"]):
        assert record.text == captions[record.key]
        assert _close(seen.images[row].getpixel((16, 16)), colours[record.key])  # its own image
        ids = batch["inputs"].ids[row, prompt:][batch["inputs"].loss_mask[row, prompt:] == 1]
        assert tokenizer.decode(ids, skip_special_tokens=True) == record.text  # its own caption


def test_undecodable_images_are_skipped_with_the_reason(tmp_path, tokenizer):
    shard = write_records(tmp_path, [("bad", b"\xff\xd8\xff not a jpeg", "a red star on a blue background")])
    batches = TaskBatches(build_index([shard]), CaptioningTask(tokenizer, Seen()), batch_size=1, seed=0,
                          max_redraws=3)
    with pytest.raises(DataError, match=r"3 draws in a row could not be used at micro-step 0 \(image_undecodable 3 "
                                         r"in this batch; last: bad: image_undecodable"):
        batches.batch(0)


def test_skips_are_counted_by_reason_and_full_images_are_not_kept(tmp_path, tokenizer):
    shard = write_records(tmp_path, [("good", jpeg(Image.new("RGB", (40, 30), RED)), "a red square on a blue background"),
                                     ("blank", jpeg(Image.new("RGB", (40, 30), BLUE)), "   "), ("broken", b"\xff\xd8\xff cut", "a broken one")])
    batches = TaskBatches(build_index([shard]), CaptioningTask(tokenizer, Seen()), batch_size=8, seed=0)
    batch = batches.batch(0)
    assert batch["inputs"].batch_size == 8 and "records" not in batch  # decoded images go once encoded
    assert set(batch["skipped_reasons"]) == {"caption_empty", "image_undecodable"}
    assert sum(batch["skipped_reasons"].values()) == batch["skipped"] > 0 and batch["first_skip"]


def test_shards_that_are_not_pairs_or_not_readable_are_named(tmp_path, tokenizer):
    import gzip
    import os

    from trainers.data import one_line

    good = write_records(tmp_path / "a", [("k1", jpeg(Image.new("RGB", (40, 30), RED)), "a red square"), ("k2", jpeg(Image.new("RGB", (40, 30), BLUE)), "a blue one")])
    # left out, and counted: an invalid key, an image alone, a caption alone, a caption given twice
    odd = write_records(tmp_path / "b", [("bad key", jpeg(Image.new("RGB", (40, 30), RED)), "x y"), ("alone", jpeg(Image.new("RGB", (40, 30), RED)), None),
                                         ("words", None, "just words"), ("twice", jpeg(Image.new("RGB", (40, 30), RED)), "a red square")])
    with tarfile.open(odd, "a") as tar:
        info = tarfile.TarInfo("twice.txt")
        info.size = 9
        tar.addfile(info, io.BytesIO(b"a dog cat"))
    index = build_index([good, odd])
    assert index.total == 2
    assert index.left_out == {"key_invalid": 1, "no_caption": 1, "no_image": 1, "member_repeated": 1}
    data = open(good, "rb").read()
    (tmp_path / "cut.tar").write_bytes(data[: len(data) // 2 + 100])
    (tmp_path / "zipped.tar").write_bytes(gzip.compress(data))
    (tmp_path / "empty.tar").write_bytes(b"")
    os.mkfifo(tmp_path / "pipe.tar")
    for name, shown in [("cut.tar", "cannot be read as a tar"), ("zipped.tar", "cannot be read as a tar"),
                        ("empty.tar", "cannot be read as a tar"), ("pipe.tar", "is not a regular file")]:
        with pytest.raises(DataError, match=shown) as caught:
            build_index([str(tmp_path / name)])
        assert "\n" not in str(caught.value) and one_line(caught.value) == str(caught.value)
    # a manifest's shard that changed since its run
    with pytest.raises(DataError, match=r"has [\d,]+ bytes, its manifest says 10: it changed since the run"):
        build_index([good], expected={good: (10, "0" * 64)})
    same_size = {good: (os.path.getsize(good), "0" * 64), odd: (os.path.getsize(odd), "0" * 64)}
    assert build_index([good, odd], expected=same_size).total == 2  # the size matches; fewer pairs than records
    with pytest.raises(DataError, match="does not match its manifest's sha256 .data.verify_shards."):
        build_index([good], expected=same_size, verify=True)  # data.verify_shards: the bytes themselves
    # a DataError raised in a DataLoader worker: its last line is the message
    wrapped = DataError("Caught DataError in DataLoader worker process 0.\nOriginal Traceback (most recent call "
                        "last):\n  File ...\ntrainers.data.DataError: 100 draws in a row could not be used (last: "
                        "k: error_ValueError line one\nline two)")
    assert one_line(wrapped) == "100 draws in a row could not be used (last: k: error_ValueError line one line two)"


def test_a_copy_of_the_training_run_is_recognised_as_training_data(pool_dir, tmp_path):
    """eval's split: the training run's manifest under another path (a published copy) lists the same
    shard sha256s, so its scores are labelled training data, not validation."""
    import shutil
    from pathlib import Path

    from manifests.recipe import load_recipe
    from pipelines.drivers.curate import curate
    from trainers.config import config_from_dict
    from trainers.evaluate import eval_split

    root = Path(__file__).parents[1]
    trained = tmp_path / "curated"
    curate(load_recipe(root / "manifests/recipes/quickstart.yaml"), f"{pool_dir}/shards/00000.tar", str(trained))
    shutil.copytree(trained, tmp_path / "published")
    config = config_from_dict({"data": {"shards": f"{trained}/manifest.json"},
                               "run": {"eval_shards": f"{tmp_path}/published/manifest.json"}})
    split, _, urls, warning = eval_split(config)
    assert split == "training data" and warning.startswith(f"{len(urls)} of the {len(urls)} shards")
    other = tmp_path / "other"
    curate(load_recipe(root / "manifests/recipes/quickstart.yaml"), f"{pool_dir}/shards/00001.tar", str(other))
    held = config_from_dict({"data": {"shards": f"{trained}/manifest.json"},
                             "run": {"eval_shards": f"{other}/manifest.json"}})
    assert eval_split(held)[0] == "validation"
