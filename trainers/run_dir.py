"""What the trainer writes into run.out_dir, and what `vlcurate train` does when some is already there.

Training into a directory that holds an earlier run used to start over silently and append a second
run's lines to its metrics.jsonl. Now it refuses unless told: --resume continues from the latest
checkpoint (metrics lines past that checkpoint, which the resumed run writes again, are dropped),
--overwrite deletes what the trainer itself wrote there and starts again. Nothing else in the
directory is ever deleted: a user's notes or data beside a run stay.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path

log = logging.getLogger("vlcurate")

METRICS = "metrics.jsonl"
EVAL = "eval"
EVAL_HISTORY = "history.jsonl"  # eval/history.jsonl: one line per `vlcurate eval` (trainers/evaluate.py)
# Names the trainer writes, and only those: checkpoints/ holds step-N, .tmp-step-N, step-N.replaced-T,
# latest and its temporary; eval/ holds step-N (or a checkpoint's own name) and history.jsonl.
_CHECKPOINT_ENTRY = re.compile(r"(\.tmp-)?step-\d{8}(\.replaced-\d+)?|latest|\.latest\.tmp")
_EVAL_FILES = ("scores.json", "index.html", "predictions.jsonl")


class RunDirError(RuntimeError):
    """run.out_dir holds an earlier run and neither --resume nor --overwrite was given."""


def _written(out: Path) -> list[Path]:
    """The trainer's own outputs present in out (files and directories), in a stable order."""
    found = [out / name for name in (METRICS, "tensorboard") if (out / name).exists()]
    checkpoints = out / "checkpoints"
    if checkpoints.is_dir():
        found += sorted(p for p in checkpoints.iterdir() if _CHECKPOINT_ENTRY.fullmatch(p.name))
    evals = out / EVAL
    if evals.is_dir():
        found += sorted(p for p in evals.iterdir()
                        if p.name == EVAL_HISTORY or (p.is_dir() and any((p / f).is_file() for f in _EVAL_FILES)))
    return found


def prepare_out_dir(out: Path, resume: bool, overwrite: bool, delete: bool = True) -> None:
    """Refuse to train over an earlier run unless resuming or overwriting; clear it for --overwrite
    (delete=False: only check, as DDP ranks other than 0 do)."""
    if resume and overwrite:
        raise RunDirError("--resume continues the run in run.out_dir and --overwrite deletes it: pass one of them")
    written = _written(out)
    if resume and delete:  # a checkpoint an interrupted save left half-written: never usable
        for partial in [p for p in written if p.parent.name == "checkpoints" and p.name.startswith(".tmp-step-")]:
            shutil.rmtree(partial, ignore_errors=True)
            log.info("resume: removed %s, a checkpoint an interrupted save left unfinished", partial)
    if not written or resume or (overwrite and not delete):
        return
    if not overwrite:
        shown = ", ".join(sorted({p.relative_to(out).parts[0] for p in written}))
        raise RunDirError(f"run.out_dir {out} already holds a training run ({shown}): pass --resume to continue it "
                          f"from its latest checkpoint, --overwrite to delete what the trainer wrote there and "
                          f"start again, or set another run.out_dir")
    for path in written:
        if path.parent.name == EVAL and path.is_dir():
            for name in _EVAL_FILES:  # an eval directory: only the files eval writes
                (path / name).unlink(missing_ok=True)
            _remove_if_empty(path)
        elif path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    for folder in (out / "checkpoints", out / EVAL):
        _remove_if_empty(folder)
    log.warning("--overwrite: deleted the earlier run's %d outputs in %s", len(written), out)


def _remove_if_empty(folder: Path) -> None:
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def truncate_metrics(out: Path, step: int) -> None:
    """On resume from `step`: drop metrics lines past it (the resumed run writes those steps again),
    so metrics.jsonl holds each step once. Rewritten to a temporary file and renamed: never half-written."""
    path = out / METRICS
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line if line.endswith("\n") else line + "\n" for line in lines
            if _step_of(line) is not None and _step_of(line) <= step]
    if kept == lines:
        return
    tmp = path.with_name(f".{METRICS}.tmp")
    tmp.write_text("".join(kept), encoding="utf-8")
    os.replace(tmp, path)
    if len(kept) < len(lines):
        log.info("resume: dropped %d metrics lines past step %d (trained again now)", len(lines) - len(kept), step)


def last_metrics(out: Path) -> dict | None:
    """The last whole record of metrics.jsonl (what a finished run reports again), or None."""
    path = out / METRICS
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    for line in reversed(lines):
        if _step_of(line) is not None:
            return json.loads(line)
    return None


def _step_of(line: str) -> int | None:
    try:
        record = json.loads(line)
    except ValueError:  # a line cut short by a kill mid-write
        return None
    step = record.get("step") if isinstance(record, dict) else None
    return step if isinstance(step, int) else None
