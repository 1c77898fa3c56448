"""The training step never waits for the device outside logging and checkpoint steps (issue 19), a
non-finite step is skipped on the device with parameters and optimizer state untouched, and
without optim.skip_nonfinite the run stops at the next read with no checkpoint written after the
bad step. metrics.jsonl carries the data-path figures."""

from __future__ import annotations

import json
import traceback
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from trainers.config import config_from_dict
from trainers.step import Stepper, Tallies
from trainers.train import TrainingError, train

# Ops that make the host wait for a device value: .item()/float()/int() (_local_scalar_dense),
# bool() (is_nonzero), torch.equal, and ops whose output shape depends on the data.
SYNCING = {"_local_scalar_dense", "is_nonzero", "equal", "nonzero", "masked_select", "unique", "_unique2",
           "unique_consecutive"}


@pytest.fixture(scope="module")
def setup(tiny_clip, tmp_path_factory):
    from tests.shapes_data import write_shapes
    from tests.tiny_llm import write_tiny_llm

    folder = tmp_path_factory.mktemp("step")
    return folder, write_shapes(folder / "shapes", n=64), write_tiny_llm(folder / "llm"), tiny_clip


def _config(setup, name: str, stage: str = "captioner", **sections):
    folder, shards, llm, clip = setup
    data = {
        "run": {"out_dir": str(folder / name), "device": "cpu", "seed": 3, "log_every": 3, "checkpoint_every": 100,
                "stage": stage, "threads": 1},
        "vision": {"name": clip["name"], "pretrained": clip["pretrained"], "config_dir": clip["config_dir"]},
        "llm": {"path": llm},
        "adapter": {"kind": "vadapter" if stage == "captioner" else "mlp", "queries": 4,
                    "tiny_lm": {"width": 32, "layers": 1, "heads": 4, "max_len": 32}},
        "data": {"shards": shards, "batch_size": 4, "workers": 0, "max_caption_tokens": 12},
        "optim": {"lr": 1e-3, "warmup_steps": 2, "steps": 7},
    }
    for section, values in sections.items():
        data[section] = {**data[section], **values}
    return config_from_dict(data).validate()


class SyncCounter(TorchDispatchMode):
    """Records every syncing op with the step and the part of the loop it ran in, and whether it came
    from transformers' attention-mask check (eager HF models read the padding mask on the host)."""

    def __init__(self):
        super().__init__()
        self.step, self.phase, self.seen, self.calls = 0, "loop", [], []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in SYNCING:
            hf_mask = any(f.filename.endswith("transformers/masking_utils.py") for f in traceback.extract_stack())
            self.seen.append((self.step, self.phase, name, hf_mask))
        return func(*args, **(kwargs or {}))


def _counting(monkeypatch, counter: SyncCounter):
    """Stepper.step, the DataLoader wait and Tallies.read tag the ops they run; the counter is on from
    the first step to the end of the run."""
    step, read = Stepper.step, Tallies.read
    import trainers.train as train_module

    next_batch = train_module._Window.next
    started = []

    def counted_step(self, batches, number):
        if not started:
            counter.__enter__()
            started.append(True)
        counter.step, counter.phase = number, "step"
        try:
            return step(self, batches, number)
        finally:
            counter.phase = "loop"

    def phase(name, fn):
        def wrapped(*args, **kwargs):
            counter.phase = name
            counter.calls.append((counter.step, name))
            try:
                return fn(*args, **kwargs)
            finally:
                counter.phase = "loop"
        return wrapped

    monkeypatch.setattr(Stepper, "step", counted_step)
    monkeypatch.setattr(Tallies, "read", phase("read", read))
    monkeypatch.setattr(train_module._Window, "next", phase("loader", next_batch))
    return started


@pytest.mark.parametrize("stage", ["captioner", "vlm"])
def test_no_step_waits_for_the_device_outside_logging_steps(setup, monkeypatch, stage):
    counter = SyncCounter()
    started = _counting(monkeypatch, counter)
    try:
        train(_config(setup, f"nosync-{stage}", stage))
    finally:
        if started:
            counter.__exit__(None, None, None)
    logging_steps = {3, 6, 7}  # run.log_every 3, and the last step
    reads = [s for s, phase in counter.calls if phase == "read"]
    assert reads == sorted(logging_steps)  # one read per logging step, none elsewhere
    in_steps = [seen for seen in counter.seen if seen[1] == "step"]
    # The trainer's own step (data on the device, loss, clipping, update, tallies) never syncs. The
    # frozen HF LLM's eager mask check does (twice per forward); under torch.compile it does not.
    assert [s for s in in_steps if not s[3]] == []
    assert stage == "vlm" or in_steps == []
    elsewhere = {s for s, phase, _, _ in counter.seen if phase == "loop"}
    assert elsewhere <= logging_steps, elsewhere  # e.g. the last checkpoint's save
    lines = [json.loads(line) for line in (Path(setup[0]) / f"nosync-{stage}/metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [3, 6, 7]
    for r in lines:
        assert {"loss", "grad_norm", "lr", "skipped", "nonfinite_steps", "samples_per_s", "tokens_per_s", "steps_per_s",
                "mfu", "data_wait_s", "compute_s", "loader_samples_per_s"} <= r.keys()
        assert r["loss"] > 0 and r["grad_norm"] > 0 and r["nonfinite_steps"] == 0
        assert r["data_wait_s"] > 0 and r["compute_s"] > 0 and r["loader_samples_per_s"] > 0
        assert r["tokens_per_s"] == pytest.approx(r["samples_per_s"] * 8)  # 7 caption words + EOS, padding not counted


@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch.cuda.set_sync_debug_mode needs a CUDA device")
def test_no_cuda_sync_outside_logging_steps(setup, monkeypatch):
    step = Stepper.step

    def strict(self, batches, number):
        # Step 1 builds the optimizer state and warms kernels up; steps 3, 6 and 7 are read afterwards.
        checked = number not in (1, 3, 6, 7)
        torch.cuda.set_sync_debug_mode("error" if checked else "default")
        try:
            return step(self, batches, number)
        finally:
            torch.cuda.set_sync_debug_mode("default")

    monkeypatch.setattr(Stepper, "step", strict)
    last = train(_config(setup, "cuda-nosync", run={"device": "cuda"}))
    assert last["step"] == 7 and last["nonfinite_steps"] == 0


def _nan_at(monkeypatch, bad_step: int):
    """Stepper.step with a non-finite loss at bad_step (the loss times nan: gradients nan too)."""
    step = Stepper.step

    def poisoned(self, batches, number):
        forward = self.forward
        if number == bad_step:
            self.forward = lambda inputs: forward(inputs) * float("nan")
        try:
            return step(self, batches, number)
        finally:
            self.forward = forward

    monkeypatch.setattr(Stepper, "step", poisoned)


def test_a_non_finite_step_leaves_parameters_and_optimizer_state_unchanged(setup):
    from trainers.build import build_model
    from trainers.tasks import Record, build_task
    from trainers.train import _param_groups

    config = _config(setup, "unit")
    model, _, tokenizer, _ = build_model(config)
    task = build_task(config, tokenizer, preprocess=lambda image: image)
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    batch = task.collate([task.encode(Record(f"k{i}", [image], "a red circle on a blue background", []))
                          for i, image in enumerate(images)])
    params = model.trainable_parameters()
    optimizer = torch.optim.AdamW(_param_groups(params, 0.1), lr=1e-2, fused=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    model.train()
    stepper = Stepper(model, optimizer, scheduler, params, 1.0, 1, torch.device("cpu"), cudagraphs=False)
    stepper.step([batch], 1)  # a good step: the optimizer now has moments and a step count

    def snapshot():
        state = optimizer.state_dict()["state"]
        return [p.detach().clone() for p in params], {k: {n: v.clone() for n, v in s.items()} for k, s in state.items()}

    def unchanged(before):
        params_before, state_before = before
        state = optimizer.state_dict()["state"]
        return (all(torch.equal(a, b) for a, b in zip(params_before, params))
                and all(torch.equal(v, state[k][n]) for k, s in state_before.items() for n, v in s.items()))

    before = snapshot()
    stepper.forward = lambda inputs: model(inputs) * float("nan")
    stepper.step([batch], 2)  # non-finite loss
    assert unchanged(before)
    stepper.forward = model
    hook = params[0].register_hook(lambda grad: grad * float("inf"))
    stepper.step([batch], 3)  # finite loss, non-finite grad norm
    hook.remove()
    assert unchanged(before)
    stepper.step([batch], 4)  # a good step updates again
    assert not unchanged(before)
    sums = stepper.tallies.read()
    assert sums.nonfinite == 2 and sums.first_bad[0] == 2 and sums.first_bad[1] != sums.first_bad[1]  # nan
    assert sums.loss > 0 and sums.grad_norm > 0  # means over the two finite steps


def test_a_non_finite_loss_stops_the_run_at_the_next_read_before_any_checkpoint(setup, monkeypatch):
    _nan_at(monkeypatch, 2)
    config = _config(setup, "stops", run={"log_every": 4, "checkpoint_every": 3})
    with pytest.raises(TrainingError, match=r"^step 2: the loss is nan .* Found at step 3 "):
        train(config)  # step 3 is a checkpoint step: read before saving, so nothing is saved
    assert not (Path(config.run.out_dir) / "checkpoints").exists() or not any(
        (Path(config.run.out_dir) / "checkpoints").glob("step-*"))
    monkeypatch.undo()
    _nan_at(monkeypatch, 5)
    config = _config(setup, "stops-later", run={"log_every": 4, "checkpoint_every": 4}, optim={"steps": 8})
    with pytest.raises(TrainingError, match=r"^step 5: the loss is nan .* Found at step 8 "):
        train(config)
    saved = sorted(p.name for p in (Path(config.run.out_dir) / "checkpoints").glob("step-*"))
    assert saved == ["step-00000004"]  # from before the bad step; step 8's was never written


def test_skipped_non_finite_steps_are_counted_in_logs_and_checkpoints(setup, monkeypatch):
    _nan_at(monkeypatch, 2)
    config = _config(setup, "skips", run={"log_every": 4, "checkpoint_every": 3}, optim={"skip_nonfinite": True})
    last = train(config)
    assert last["step"] == 7 and last["nonfinite_steps"] == 1
    out = Path(config.run.out_dir)
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["nonfinite_steps"]) for r in lines] == [(4, 1), (7, 1)]
    assert all(r["loss"] == r["loss"] for r in lines)  # finite: the mean leaves the skipped step out
    state = json.loads((out / "checkpoints/step-00000003/state.json").read_text())
    assert state["nonfinite_steps"] == 1  # read at the checkpoint, between two logging steps
