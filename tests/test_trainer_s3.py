"""The trainer reads a published curated run from object storage: a run curated here (DirectRunner),
published to a real S3 server (moto's, on loopback) through s3fs, then trained from its
s3://.../manifest.json with data.storage_options (DataLoader workers included) and evaluated on
held-out shards in the same bucket; the credentials never reach a file the trainer writes."""

from __future__ import annotations

import json
from pathlib import Path

import fsspec
import pytest
import yaml

from tests.shapes_data import write_shapes
from tests.test_eval_whole_split import write_held_out
from tests.test_publish import BUCKET, remote_fs, s3  # noqa: F401  (the moto server fixture)
from trainers.config import load_config
from trainers.data import open_shard
from trainers.evaluate import PREDICTIONS, evaluate
from trainers.train import train


@pytest.fixture(scope="module")
def published(s3, tiny_clip, tmp_path_factory):  # noqa: F811
    from manifests.recipe import load_recipe
    from pipelines.drivers.curate import curate
    from pipelines.drivers.publish import publish
    from tests.tiny_llm import write_tiny_llm

    folder = tmp_path_factory.mktemp("s3_trainer")
    write_shapes(folder / "pool", n=96, per_shard=48)
    recipe = {"name": "shapes", "seed": 0, "output": {"samples_per_shard": 40},
              "stages": [{"heuristics": {"image": {"min_side": 32}, "language": {"allowed": ["en"], "min_score": 0.0}}}]}
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    curate(load_recipe(folder / "recipe.yaml"), f"{folder}/pool/*.tar", str(folder / "curated"))
    dest = f"s3://{BUCKET}/trainer/curated"
    publish(str(folder / "curated"), dest, storage_options=s3, progress=False)
    keys = write_held_out(folder / "held" / "00000.tar", 20, seed=3)
    remote_fs(s3).put(str(folder / "held" / "00000.tar"), f"{BUCKET}/trainer/held/00000.tar")
    # publish made its options this process's s3 defaults: drop them, so only the config's options can work.
    fsspec.config.conf.pop("s3", None)
    return folder, dest, write_tiny_llm(folder / "tokenizer"), keys


def test_train_and_evaluate_from_a_published_run_on_s3(published, s3, tiny_clip):  # noqa: F811
    folder, dest, tokenizer, keys = published
    data = {
        "run": {"out_dir": str(folder / "run"), "stage": "captioner", "device": "cpu", "seed": 1, "log_every": 1,
                "checkpoint_every": 1000, "eval_shards": f"s3://{BUCKET}/trainer/held/*.tar"},
        "vision": {k: tiny_clip[k] for k in ("name", "pretrained", "config_dir")},
        "llm": {"path": tokenizer},
        "adapter": {"kind": "vadapter", "queries": 8, "tiny_lm": {"width": 32, "layers": 1, "heads": 4, "max_len": 64}},
        "data": {"shards": f"{dest}/manifest.json", "batch_size": 8, "workers": 1, "max_caption_tokens": 12,
                 "storage_options": s3},
        "optim": {"lr": 3e-3, "warmup_steps": 1, "steps": 4},
    }
    path = folder / "s3.yaml"
    path.write_text(yaml.safe_dump(data))
    config = load_config(path)
    fsspec.config.conf.pop("s3", None)
    last = train(config)
    assert last["step"] == 4 and last["skipped"] == 0 and last["loss"] > 0
    result = evaluate(config, batches=None)
    assert result["split"] == "validation" and result["samples"] == len(keys) and result["whole_split"] is True
    out = Path(config.run.out_dir)
    rows = (out / "eval" / "step-00000004" / PREDICTIONS).read_text().splitlines()
    assert json.loads(rows[0])["shard"] == f"s3://{BUCKET}/trainer/held/00000.tar"
    # The credentials are used, never written: config.json, the checkpoint's state.json, the eval page.
    secret = s3["secret"]
    written = [out / "config.json", out / "checkpoints" / "step-00000004" / "state.json",
               out / "eval" / "step-00000004" / "index.html", out / "eval" / "step-00000004" / "scores.json"]
    for file in written:
        assert secret not in file.read_text(), file
    saved = json.loads((out / "config.json").read_text())["data"]["storage_options"]
    assert saved["key"] == saved["secret"] == "<redacted>" and saved["endpoint_url"] == s3["endpoint_url"]


def test_remote_shards_are_read_without_read_ahead(published, s3):  # noqa: F811
    _, dest, _, _ = published
    with open_shard(f"{dest}/shards/00000.tar", s3) as f:
        assert f.cache.name == "none"  # a member is one ranged read, not a 50 MB block per sample
        assert f.read(4) and f.size > 0
