"""Training into a run.out_dir that holds an earlier run is refused unless --resume (continue: metrics
lines past the checkpoint are dropped, so each step is logged once) or --overwrite (only what the
trainer wrote is deleted); `vlcurate train` shows a progress bar, or with --quiet periodic lines."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_trainer_loop import _config, _losses, setup  # noqa: F401  (the module's fixture)
from trainers.config import load_config
from trainers.run_dir import RunDirError
from trainers.train import train

ROOT = Path(__file__).parents[1]


def _steps(out: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_an_existing_run_is_refused_and_overwrite_deletes_only_the_trainers_files(setup):  # noqa: F811
    config = load_config(_config(setup, "again", optim__steps=3, run__checkpoint_every=2, run__tensorboard=True))
    train(config)
    out = Path(config.run.out_dir)
    with pytest.raises(RunDirError, match=f"run.out_dir {out} already holds a training run \\(checkpoints, "
                                          "metrics.jsonl, tensorboard\\): pass --resume to continue it"):
        train(config)
    assert _steps(out) == [1, 2, 3]  # nothing appended
    with pytest.raises(RunDirError, match="pass one of them"):
        train(config, resume=True, overwrite=True)

    # The user's files beside, and inside, the trainer's directories; an earlier eval.
    (out / "notes.txt").write_text("mine")
    (out / "checkpoints" / "README.txt").write_text("mine")
    (out / "eval" / "mine").mkdir(parents=True)
    (out / "eval" / "mine" / "plot.png").write_bytes(b"mine")
    evaluated = out / "eval" / "step-00000003"
    evaluated.mkdir()
    for name in ("scores.json", "index.html", "extra.txt"):
        (evaluated / name).write_text("{}")
    (out / "eval" / "history.jsonl").write_text('{"step": 3}\n')

    # --overwrite with a data path that does not exist fails before deleting anything (it deleted first)
    broken = config.model_copy(update={"data": config.data.model_copy(update={"shards": str(out / "nowhere/*.tar")})})
    with pytest.raises(Exception, match="nowhere"):
        train(broken, overwrite=True)
    assert _steps(out) == [1, 2, 3] and (out / "checkpoints" / "step-00000003").is_dir()

    again = config.model_copy(update={"optim": config.optim.model_copy(update={"steps": 2}),
                                      "run": config.run.model_copy(update={"tensorboard": False})})
    train(again, overwrite=True)
    assert _steps(out) == [1, 2]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["README.txt", "latest", "step-00000002"]
    assert (out / "notes.txt").read_text() == "mine" and (out / "eval" / "mine" / "plot.png").exists()
    assert sorted(p.name for p in evaluated.iterdir()) == ["extra.txt"]
    assert not (out / "eval" / "history.jsonl").exists() and not (out / "tensorboard").exists()


def test_resume_logs_each_step_once(setup):  # noqa: F811
    config = load_config(_config(setup, "resumed", optim__steps=4, run__checkpoint_every=2))
    train(config)
    out = Path(config.run.out_dir)
    expected = _losses(out)
    # As if killed during step 4's checkpoint: steps 3 and 4 logged (4 cut mid-line), latest is step 2.
    shutil.rmtree(out / "checkpoints" / "step-00000004")
    (out / "checkpoints" / "latest").write_text("step-00000002")
    lines = (out / "metrics.jsonl").read_text().splitlines()
    (out / "metrics.jsonl").write_text("\n".join(lines[:3]) + "\n" + lines[3][:20])
    train(config, resume=True)
    assert _steps(out) == [1, 2, 3, 4]
    assert _losses(out) == pytest.approx(expected, abs=1e-6)  # steps 3 and 4 again, exactly


def test_resuming_a_finished_run_reports_it_without_loading_anything(setup, caplog):  # noqa: F811
    path = _config(setup, "finished", optim__steps=2, run__checkpoint_every=2)
    config = load_config(path)
    train(config)
    out = Path(config.run.out_dir)
    before = (out / "metrics.jsonl").read_text()
    last = train(load_config(path, [f"--llm.path={out / 'no-such-llm'}"]), resume=True)  # would fail if loaded
    assert last["step"] == 2 and last["loss"] == _losses(out)[2]
    assert "finished at step 2 (optim.steps 2): nothing to resume" in caplog.text
    assert (out / "metrics.jsonl").read_text() == before


def test_resume_refuses_changed_settings_and_refits_the_schedule_to_more_steps(setup, caplog):  # noqa: F811
    from trainers.config import ConfigError
    from trainers.schedule import warmup_linear_decay

    path = _config(setup, "extended", optim__steps=3, optim__warmup_steps=1, run__checkpoint_every=3, run__log_every=1)
    config = load_config(path)
    train(config)
    out = Path(config.run.out_dir)
    # a changed learning rate was ignored (the checkpoint's scheduler won) while config.json recorded it
    with pytest.raises(ConfigError, match=r"2 setting\(s\) differ: adapter.width: 512 -> 48; optim.lr: 0.003 -> 0.01"):
        train(load_config(path, ["--optim.steps=5", "--optim.lr=0.01", "--adapter.width=48"]), resume=True)
    assert _steps(out) == [1, 2, 3]
    # more steps: the run goes on at its schedule's rate for 5 steps (the restored rate was 0, the old end)
    shapes = Path(config.data.shards).parent
    shutil.copytree(shapes, out.parent / "moved-shapes", dirs_exist_ok=True)
    moved = config.data.shards.replace(str(shapes), str(out.parent / "moved-shapes"))
    longer = load_config(path, ["--optim.steps=5", f"--data.shards={moved}"])
    train(longer, resume=True)
    rates = [json.loads(line)["lr"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    schedule = warmup_linear_decay(config.optim.warmup_steps, 5)
    assert rates[3:] == pytest.approx([config.optim.lr * schedule(s) for s in (3, 4)]) and rates[3] > 0
    assert "--resume: data.shards is" in caplog.text  # a moved path is allowed, with a warning


def test_unusable_samples_are_reported_by_reason(setup, caplog):  # noqa: F811
    from tests.model_inputs import write_records

    folder = setup[0] / "mixed"
    shapes = Path(setup[1].split("/{")[0])
    shutil.copytree(shapes, folder, dirs_exist_ok=True)
    write_records(folder, [(f"bad{i}", b"\xff\xd8\xff cut short", "a red circle") for i in range(200)], name="bad")
    config = load_config(_config(setup, "skips", optim__steps=2, data__shards=f"{folder}/*.tar"))
    train(config)
    lines = [json.loads(line) for line in (Path(config.run.out_dir) / "metrics.jsonl").read_text().splitlines()]
    assert lines[0]["skipped_reasons"] == {"image_undecodable": lines[0]["skipped"]} and lines[0]["skipped"] > 0
    assert "of the samples drawn in steps 1-1 could not be used and were redrawn (image_undecodable" in caplog.text


def _vlcurate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_cli_refuses_in_one_line_and_shows_a_bar_unless_quiet(setup):  # noqa: F811
    path = str(_config(setup, "cli", optim__steps=3, run__log_every=1))
    quiet = _vlcurate("train", path, "--quiet")
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert "%|" not in quiet.stderr  # no bar
    assert "step 3/3 loss" in quiet.stderr and "steps/s eta 0:00:00" in quiet.stderr  # the CI line
    refused = _vlcurate("train", path, "--quiet")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines()[-1].startswith(f"error: run.out_dir {setup[0] / 'cli'} already holds")
    shown = _vlcurate("train", path, "--overwrite")
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "train: 100%|" in shown.stderr and "3/3" in shown.stderr
    assert _steps(setup[0] / "cli") == [1, 2, 3]
