"""Held-out evaluation as the experiment runs it, on a stage-1 captioner (run.stage: captioner) over a
tiny open_clip tower loaded from a local checkpoint + config_dir: every sample of the split scored once,
the same scores and captions on every call, CIDEr-D against all of KEY.json's references, and one
prediction per sample in predictions.jsonl. Also: the same seed trains the same loss curve, and the
captioner needs only a tokenizer (the LLM's weights are never loaded)."""

from __future__ import annotations

import io
import json
import random
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from tests.model_inputs import jpeg
from tests.shapes_data import shape_image, write_shapes
from tests.tiny_llm import COLOURS, SHAPES
from trainers.cider import cider_d, tokenize
from trainers.config import load_config
from trainers.evaluate import PREDICTIONS, evaluate
from trainers.train import train

ROOT = Path(__file__).parents[1]


def write_held_out(path: Path, n: int, seed: int, broken: int = 0) -> list[str]:
    """A held-out shard in the experiment's layout: KEY.txt is the first reference, KEY.json holds all
    three ({"references": [...]}); `broken` samples have an image no decoder reads. Returns the keys."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = []
    with tarfile.open(path, "w") as tar:
        for i in range(n):
            shape, colour, background = rng.choice(SHAPES), *rng.sample(COLOURS, 2)
            references = [f"a {colour} {shape} on a {background} background", f"a {colour} {shape}",
                          f"{shape} {colour} with {background} background"]
            key = f"held/{i:04d}"
            image = b"\xff\xd8\xff not a jpeg" if i < broken else jpeg(shape_image(shape, colour, background))
            members = [(f"{key}.jpg", image), (f"{key}.txt", references[0].encode()),
                       (f"{key}.json", json.dumps({"key": key, "references": references}).encode())]
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            keys.append(key)
    return keys


@pytest.fixture(scope="module")
def world(tiny_clip, tmp_path_factory):
    from tests.tiny_llm import write_tiny_llm

    folder = tmp_path_factory.mktemp("whole_split")
    tokenizer = Path(write_tiny_llm(folder / "tokenizer"))
    for weights in tokenizer.glob("*.safetensors"):  # a tokenizer alone: the captioner must not need more
        weights.unlink()
    shards = write_shapes(folder / "train", n=128)
    keys = write_held_out(folder / "held" / "00000.tar", 40, seed=5, broken=2)
    keys += write_held_out(folder / "held" / "00001.tar", 13, seed=6)
    return folder, shards, str(tokenizer), tiny_clip, keys


def captioner_config(world, name: str, **sections) -> Path:
    folder, shards, tokenizer, clip, _ = world
    data = {
        "run": {"out_dir": str(folder / name), "stage": "captioner", "device": "cpu", "seed": 7, "log_every": 1,
                "checkpoint_every": 1000, "eval_shards": f"{folder}/held/*.tar"},
        "vision": {"name": clip["name"], "pretrained": clip["pretrained"], "config_dir": clip["config_dir"]},
        "llm": {"path": tokenizer},
        "adapter": {"kind": "vadapter", "queries": 8, "tiny_lm": {"width": 32, "layers": 1, "heads": 4, "max_len": 64}},
        "data": {"shards": shards, "batch_size": 16, "workers": 1, "max_caption_tokens": 12},
        "optim": {"lr": 3e-3, "warmup_steps": 3, "steps": 60},
    }
    for section, values in sections.items():
        data[section] = {**data[section], **values}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def losses(out_dir: str) -> list[float]:
    return [json.loads(line)["loss"] for line in (Path(out_dir) / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def trained(world):
    config = load_config(captioner_config(world, "captioner"))
    train(config)
    return config


def test_the_same_seed_trains_the_same_loss_curve(world, trained):
    again = load_config(captioner_config(world, "again", data={"workers": 2}))  # workers do not change the batches
    train(again)
    other = load_config(captioner_config(world, "other_seed", run={"seed": 8}, optim={"steps": 5}))
    train(other)
    first = losses(trained.run.out_dir)
    assert len(first) == 60 and losses(again.run.out_dir) == first  # bit for bit
    assert losses(other.run.out_dir) != first[:5]
    assert sum(first[-5:]) < 0.5 * sum(first[:5])  # it learns, with a tokenizer and no LLM weights


def test_whole_split_scores_every_sample_once_with_all_references(world, trained, tmp_path):
    *_, keys = world
    result = evaluate(trained, batches=None, out_dir=str(tmp_path / "a"))
    again = evaluate(trained, batches=None, out_dir=str(tmp_path / "b"))
    assert result["whole_split"] is True and result["split"] == "validation"
    assert result["samples"] == len(keys) - 2 and result["skipped"] == 2  # the two broken images
    assert result["references_per_sample"] == 3.0 and result["predictions"] == PREDICTIONS
    rows = [json.loads(line) for line in (tmp_path / "a" / PREDICTIONS).read_text().splitlines()]
    assert sorted(r["key"] for r in rows) == sorted(keys[2:])  # every usable sample, once
    assert (tmp_path / "a" / PREDICTIONS).read_bytes() == (tmp_path / "b" / PREDICTIONS).read_bytes()
    assert {k: again[k] for k in ("val_loss", "cider_d")} == {k: result[k] for k in ("val_loss", "cider_d")}
    assert all(len(r["references"]) == 3 and r["references"][0].endswith("background") for r in rows)
    assert rows[0]["shard"].endswith("held/00000.tar") and rows[-1]["shard"].endswith("held/00001.tar")
    assert all(r["generated"] for r in rows)
    # CIDEr-D over all three references, as the file lists them; the first alone would score otherwise.
    refs = {r["id"]: [tokenize(x) for x in r["references"]] for r in rows}
    cands = {r["id"]: tokenize(r["generated"]) for r in rows}
    mean, per = cider_d(refs, cands)
    assert result["cider_d"] == pytest.approx(mean) and all(r["cider_d"] == pytest.approx(per[r["id"]]) for r in rows)
    first_only = cider_d({i: r[:1] for i, r in refs.items()}, cands)[0]
    assert first_only != pytest.approx(mean)
    scores = json.loads((tmp_path / "a" / "scores.json").read_text())
    assert {"checkpoint", "step", "split", "shards", "val_loss", "cider_d", "samples", "beams"} <= scores.keys()
    # The whole split does not depend on the batch size (beyond float rounding).
    small = trained.model_copy(update={"data": trained.data.model_copy(update={"batch_size": 5})})
    other = evaluate(small, batches=None, out_dir=str(tmp_path / "c"))
    assert other["val_loss"] == pytest.approx(result["val_loss"], rel=1e-4) and other["samples"] == result["samples"]


def test_sampled_batches_still_work_and_write_predictions(trained, tmp_path):
    result = evaluate(trained, batches=2, beams=2, out_dir=str(tmp_path))
    assert result["whole_split"] is False and result["samples"] == 32 and result["references_per_sample"] == 3.0
    rows = (tmp_path / PREDICTIONS).read_text().splitlines()
    assert len(rows) == 32 and json.loads(rows[0])["id"] == "0-0"


def test_cli_scores_the_whole_split_from_the_config_key(world, trained):
    path = captioner_config(world, "captioner")  # the trained run's config
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", "eval", str(path), "--quiet",
                           "--run.eval_whole_split=true"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"on {len(world[4]) - 2} held-out samples" in done.stdout
    out = Path(trained.run.out_dir) / "eval" / "step-00000060"
    assert json.loads((out / "scores.json").read_text())["whole_split"] is True
    assert len((out / PREDICTIONS).read_text().splitlines()) == len(world[4]) - 2
