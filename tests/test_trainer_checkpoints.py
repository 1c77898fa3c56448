"""Trainer state that cannot be trusted is never used silently (issue 13): checksums in state.json,
fallback from a broken `latest` to the newest valid checkpoint at WARNING, checkpoints never
deleted, and a non-finite loss stops the run unless skipping is asked for."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from tests.test_trainer_loop import _config, _losses, setup  # noqa: F401  (the module's fixture)
from trainers.checkpoint import CheckpointError, checkpoint_problem, latest_checkpoint
from trainers.config import load_config
from trainers.train import TrainingError, train


@pytest.fixture(scope="module")
def checkpointed(setup):  # noqa: F811
    config = load_config(_config(setup, "ckpt", optim__steps=6, run__checkpoint_every=2))
    train(config)
    return Path(config.run.out_dir)


def _copy(run: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(run, out)
    return out


def test_every_checkpoint_file_is_checked_against_state_json(checkpointed, tmp_path):
    out = _copy(checkpointed, tmp_path)
    step6 = out / "checkpoints" / "step-00000006"
    assert checkpoint_problem(step6) is None
    assert set(json.loads((step6 / "state.json").read_text())["files"]) == {
        "trainable.safetensors", "optimizer.pt", "scheduler.pt", "rng.pt"}
    data = bytearray((step6 / "trainable.safetensors").read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the weights
    (step6 / "trainable.safetensors").write_bytes(bytes(data))
    assert "trainable.safetensors does not match its sha256" in checkpoint_problem(step6)
    step4 = out / "checkpoints" / "step-00000004"
    state = json.loads((step4 / "state.json").read_text())
    (step4 / "state.json").write_text(json.dumps({**state, "step": 5}))
    assert checkpoint_problem(step4) == "state.json says step 5, the directory says 4"
    (out / "checkpoints" / "step-00000002" / "optimizer.pt").unlink()
    assert checkpoint_problem(out / "checkpoints" / "step-00000002") == "optimizer.pt is missing"


def test_a_broken_latest_falls_back_to_the_newest_valid_checkpoint(checkpointed, setup, tmp_path, caplog):  # noqa: F811
    out = _copy(checkpointed, tmp_path)
    (out / "checkpoints" / "step-00000006" / "rng.pt").write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING, logger="vlcurate"):
        assert latest_checkpoint(str(out)).name == "step-00000004"
    assert "latest points to step-00000006, which cannot be used: rng.pt does not match" in caplog.text
    assert "resuming from step-00000004, the newest valid checkpoint" in caplog.text
    # Resuming to step 8 writes new checkpoints without deleting the broken step 6: it is moved aside.
    config = load_config(_config(setup, "ckpt", optim__steps=8, run__checkpoint_every=2, run__out_dir=str(out)))
    train(config, resume=True)
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert "step-00000008" in names and any(n.startswith("step-00000006.replaced-") for n in names)
    assert checkpoint_problem(out / "checkpoints" / "step-00000006") is None  # rewritten, valid


def test_resume_refuses_when_no_checkpoint_is_usable(checkpointed, setup, tmp_path):  # noqa: F811
    out = _copy(checkpointed, tmp_path)
    for step in out.glob("checkpoints/step-*"):
        (step / "state.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="holds checkpoints but none is usable"):
        latest_checkpoint(str(out))


def test_a_non_finite_loss_stops_the_run_unless_skipping_is_asked_for(setup):  # noqa: F811
    with pytest.raises(TrainingError, match="the loss is nan|the loss is inf"):
        train(load_config(_config(setup, "diverges", optim__steps=8, optim__lr=1e30, optim__warmup_steps=0)))
    last = train(load_config(_config(setup, "skips", optim__steps=8, optim__lr=1e30, optim__warmup_steps=0,
                                     optim__skip_nonfinite=True)))
    assert last["step"] == 8 and last["nonfinite_steps"] > 0


class _Runs:
    """What a hostile optimizer.pt would unpickle: it must never be called."""

    def __reduce__(self):
        return (print, ("this ran",))


def test_a_checkpoint_file_that_weights_only_refuses_is_one_line_without_unpickling_advice(checkpointed, setup,
                                                                                           tmp_path, capsys):  # noqa: F811
    import pickle

    from manifests.storage import sha256_of

    out = _copy(checkpointed, tmp_path)
    step6 = out / "checkpoints" / "step-00000006"
    (step6 / "optimizer.pt").write_bytes(pickle.dumps(_Runs()))
    state = json.loads((step6 / "state.json").read_text())  # checksums updated, as an attacker would
    state["files"]["optimizer.pt"] = sha256_of(str(step6 / "optimizer.pt"))
    (step6 / "state.json").write_text(json.dumps(state))
    assert checkpoint_problem(step6) is None
    config = load_config(_config(setup, "ckpt", optim__steps=8, run__checkpoint_every=2, run__out_dir=str(out)))
    with pytest.raises(CheckpointError, match=r"optimizer.pt cannot be loaded \(UnpicklingError\); it was not "
                                              r"written by this trainer") as caught:
        train(config, resume=True)
    assert "weights_only" not in str(caught.value) and "this ran" not in capsys.readouterr().out


def test_a_checkpoint_torch_cannot_write_is_one_line(tmp_path, monkeypatch):
    """On a full disk torch's zip writer raises "unexpected pos" with no errno: a CheckpointError
    (one line from `train`) that says what to do, not 47 lines of torch frames."""
    import torch

    from trainers import checkpoint

    module = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(module.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)

    def full_disk(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 4416 vs 4310")

    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    with pytest.raises(CheckpointError, match="torch's writer failed with .* MB free there .* --resume"):
        checkpoint.save_checkpoint(str(tmp_path), 3, module, optimizer, scheduler, {})
    assert not (tmp_path / "checkpoints" / "step-00000003").exists()
