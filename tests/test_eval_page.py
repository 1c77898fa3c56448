"""`vlcurate eval`: scores on the held-out split (run.eval_shards), training data labelled as such,
and one self-contained, escaped, small page with the config, loss and CIDEr-D curves over steps and
samples beside their images and references."""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.model_inputs import jpeg, write_records
from tests.shapes_data import shape_image, write_shapes
from tests.test_trainer_loop import _config, setup  # noqa: F401  (the module's fixture)
from trainers.config import load_config
from trainers.eval_page import MAX_ROWS, THUMB, _series, read_jsonl
from trainers.evaluate import evaluate
from trainers.train import train

ROOT = Path(__file__).parents[1]
HOSTILE = '<script>alert("x")</script> a red circle & <b>bold</b> on a <img src=http://evil.invalid/x.png>'


@pytest.fixture(scope="module")
def run(setup):  # noqa: F811
    """A short run with checkpoints at steps 2 and 4, and held-out shards: shapes, plus captions that
    are hostile HTML on large images."""
    folder = setup[0]
    held = write_shapes(folder / "held", n=64, seed=9)
    big = shape_image("circle", "red", "blue", size=400)
    hostile = write_records(folder / "hostile", [(f"h{i:03d}", jpeg(big), HOSTILE) for i in range(64)])
    config = load_config(_config(setup, "paged", optim__steps=4, run__checkpoint_every=2))
    train(config)
    return config, held, hostile


def _with_eval_shards(config, shards: str):
    return config.model_copy(update={"run": config.run.model_copy(update={"eval_shards": shards})})


def test_eval_uses_the_held_out_split_and_labels_training_data(run, setup, tmp_path):  # noqa: F811
    config, held, _ = run
    heldout = evaluate(_with_eval_shards(config, held), batches=1, out_dir=str(tmp_path / "held"))
    assert heldout["split"] == "validation" and heldout["val_loss"] > 0 and "warning" not in heldout
    assert "train_loss" not in heldout and heldout["shards"] == held and heldout["step"] == 4
    assert "class=warn" not in (tmp_path / "held" / "index.html").read_text()

    unset = evaluate(config, batches=1, out_dir=str(tmp_path / "unset"))
    assert unset["split"] == "training data" and "val_loss" not in unset and unset["train_loss"] > 0
    assert unset["warning"].startswith("run.eval_shards is not set, so these scores are on the TRAINING shards")
    assert json.loads((tmp_path / "unset" / "scores.json").read_text())["split"] == "training data"
    page = (tmp_path / "unset" / "index.html").read_text()
    assert "<h1>Eval of step 4 on training data</h1><p class=warn>run.eval_shards is not set" in page

    # The training shards under another spelling (a path through `..`, one shard named alone) are training data.
    shapes = config.data.shards.split("/{")[0]
    same = f"{shapes}/../shapes/00001.tar"
    overlap = evaluate(_with_eval_shards(config, same), batches=1, out_dir=str(tmp_path / "overlap"))
    assert overlap["split"] == "training data"
    assert overlap["warning"].startswith("1 of the 1 shards of run.eval_shards are also training shards")


def test_the_page_is_self_contained_escaped_and_small(run, tmp_path):
    config, _, hostile = run
    result = evaluate(_with_eval_shards(config, hostile), batches=4, out_dir=str(tmp_path / "page"))
    assert result["samples"] == 64
    page = (tmp_path / "page" / "index.html").read_text()
    assert "<script" not in page and "evil.invalid/x.png>" not in page and "<b>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; a red circle &amp; &lt;b&gt;bold&lt;/b&gt;" in page
    # Nothing is fetched: the only elements are plain markup and images whose src is inline data.
    tags = re.findall(r"<([a-z0-9]+)([^>]*)>", page)  # escaped caption text holds no `<`: real tags only
    assert {name for name, _ in tags} <= {"html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "table",
                                          "tr", "th", "td", "img", "br", "pre"}
    assert all("href" not in attrs for _, attrs in tags)
    sources = re.findall(r"src='([^']*)'", page)
    assert len(sources) == sum(name == "img" for name, _ in tags)
    assert all(s.startswith(("data:image/jpeg;base64,", "data:image/png;base64,")) for s in sources)
    thumbs = [s for s in sources if s.startswith("data:image/jpeg")]
    assert len(thumbs) == MAX_ROWS and f"the first {MAX_ROWS} of 64 samples" in page  # sampled
    sizes = {Image.open(io.BytesIO(base64.b64decode(s.split(",", 1)[1]))).size for s in thumbs}
    assert sizes == {(THUMB, THUMB)}  # 400 x 400 images, as thumbnails
    assert len(page) < 400_000
    # The run's config as trained, as YAML.
    assert "<h2>Config</h2><p>as trained (from step-00000004/state.json); the eval&#x27;s config differs in " \
           "run.eval_shards</p><pre>run:\n  out_dir:" in page
    assert "  kind: mlp\n" in page


def test_cider_and_eval_loss_curves_grow_with_each_eval(run, tmp_path):
    config, held, _ = run
    out = Path(config.run.out_dir)
    (out / "eval" / "history.jsonl").unlink(missing_ok=True)
    heldout = _with_eval_shards(config, held)
    first = evaluate(heldout, checkpoint=str(out / "checkpoints" / "step-00000002"), batches=1)
    second = evaluate(heldout, batches=1)  # latest: step 4
    history = read_jsonl(out / "eval" / "history.jsonl")
    assert [(h["step"], h["split"], h["cider_d"]) for h in history] == [
        (2, "validation", first["cider_d"]), (4, "validation", second["cider_d"])]
    assert _series(history, "cider_d") == {"eval on validation, beams 1": ([2, 4], [first["cider_d"],
                                                                                      second["cider_d"]])}
    assert _series(history, "loss")["eval on validation, beams 1"][1] == [first["val_loss"], second["val_loss"]]
    page = (out / "eval" / "step-00000004" / "index.html").read_text()
    plots = re.findall(r"<img class=plot alt='([^']*)' src='data:image/png;base64,([^']*)'", page)
    assert [alt for alt, _ in plots] == ["loss over steps", "CIDEr-D over steps"]
    assert all(Image.open(io.BytesIO(base64.b64decode(data))).format == "PNG" for _, data in plots)
    assert (out / "eval" / "step-00000002" / "index.html").exists()


def test_cli_eval_says_which_split_it_scored(run, setup):  # noqa: F811
    config, held, _ = run
    path = str(_config(setup, "paged", optim__steps=4, run__checkpoint_every=2))  # the run's config file
    command = [sys.executable, "-m", "pipelines.cli", "eval", path, "--batches", "1"]
    unset = subprocess.run([*command, "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert unset.returncode == 0, unset.stderr[-2000:]
    assert unset.stdout.startswith("TRAINING-DATA loss ") and "(not held out)" in unset.stdout
    assert unset.stderr.count("run.eval_shards is not set") == 1 and "%|" not in unset.stderr  # said once
    missing = subprocess.run([*command, "--run.eval_shards=nowhere/shards/00000.tar"], cwd=ROOT, capture_output=True,
                             text=True, timeout=300)
    assert missing.returncode == 2
    assert missing.stderr.strip().endswith(f"error: run.eval_shards: shard {ROOT}/nowhere/shards/00000.tar does not exist")
    heldout = subprocess.run([*command, f"--run.eval_shards={held}"], cwd=ROOT, capture_output=True, text=True,
                             timeout=300)
    assert heldout.returncode == 0, heldout.stderr[-2000:]
    assert heldout.stdout.startswith("validation loss ") and "held-out samples" in heldout.stdout
    assert "eval: 100%|" in heldout.stderr  # the progress bar over batches
