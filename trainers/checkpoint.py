"""Checkpoints: trainable weights (safetensors), optimizer, scheduler, RNG states, data position and
config, written into a temporary directory that is renamed into place, then `latest` is updated.
A run killed at any moment leaves the previous checkpoint intact. Loads use weights_only.

state.json, written last, records the sha256 of every other file and the step; a checkpoint is used
only if they all check out (flipped bytes, a truncated file or a step that disagrees with the
directory's name make it invalid, before anything is deserialised). A broken `latest` falls back to
the newest valid checkpoint, said at WARNING; an existing checkpoint is never deleted."""

from __future__ import annotations

import json
import logging
import os
import pickle
import random
import re
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from manifests.storage import sha256_of

CHECKPOINTS = "checkpoints"
STEP_DIR = re.compile(r"step-(\d{8})")
log = logging.getLogger("vlcurate")


class CheckpointError(RuntimeError):
    """No usable checkpoint where one was expected (the message says which and why)."""


def _sha256(path: Path) -> str:
    return sha256_of(str(path))  # uncached: a checkpoint file can change under the same name


def trainable_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """What a checkpoint stores of the trainable module: its trained parameters and buffers.
    Tied weights (the tiny LM's embedding and head) are stored once; safetensors refuses shared memory.
    Frozen parameters are left out: in stage 2 the tiny LM's token embedding (vocabulary x width,
    50 MB at SmolLM2's vocabulary) is unused and unchanged; it comes from stage 1 (load_weights)."""
    frozen = {p.data_ptr() for p in module.parameters() if not p.requires_grad}
    seen, state = set(frozen), {}
    for name, tensor in module.state_dict().items():
        if tensor.data_ptr() in seen:
            continue
        seen.add(tensor.data_ptr())
        state[name] = tensor.detach().cpu().contiguous()
    return state


def save_checkpoint(out_dir: str, step: int, module: torch.nn.Module, optimizer, scheduler,
                    state: dict[str, Any]) -> Path:
    root = Path(out_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    tmp = root / f".tmp-step-{step:08d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(trainable_state(module), str(tmp / "trainable.safetensors"))
    try:
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    except RuntimeError as err:  # torch's zip writer on a full disk: "unexpected pos", no errno
        if "PytorchStreamWriter" not in str(err) and "unexpected pos" not in str(err):
            raise
        free = shutil.disk_usage(root).free
        raise CheckpointError(f"could not write the checkpoint {tmp}: torch's writer failed with "
                              f"{free / 1e6:,.0f} MB free there (a full disk, or a file-size limit); free "
                              "space, then --resume from the last checkpoint") from None
    _, keys, pos, has_gauss, cached = np.random.get_state()
    rng = {"torch": torch.get_rng_state(), "numpy": [keys.tolist(), int(pos), int(has_gauss), float(cached)],
           "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    torch.save(rng, tmp / "rng.pt")
    files = {f.name: _sha256(f) for f in sorted(tmp.iterdir())}
    (tmp / "state.json").write_text(json.dumps({"step": step, **state, "files": files}, indent=2))
    for f in tmp.iterdir():  # data on disk before the rename makes it visible
        with open(f, "rb") as handle:
            os.fsync(handle.fileno())
    if final.exists():  # never delete a checkpoint: an earlier run's (or a broken one) is moved aside
        aside = root / f"{final.name}.replaced-{int(time.time())}"
        log.warning("%s exists; moving it to %s before writing step %d", final, aside.name, step)
        os.rename(final, aside)
    os.rename(tmp, final)
    pointer = root / ".latest.tmp"
    pointer.write_text(final.name)
    os.replace(pointer, root / "latest")
    return final


def checkpoint_problem(path: Path) -> str | None:
    """Why the checkpoint at path cannot be used, or None when every file checks out."""
    try:
        state = json.loads((path / "state.json").read_text())
    except (OSError, ValueError) as err:
        return f"state.json unreadable ({type(err).__name__}: {err})"
    named = STEP_DIR.fullmatch(path.name)
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        return "state.json has no step"
    if named and int(named.group(1)) != state["step"]:
        return f"state.json says step {state['step']}, the directory says {int(named.group(1))}"
    files = state.get("files")
    if files is None:  # written before checkpoints carried checksums: usable, unverified
        log.warning("%s has no file checksums (an older checkpoint): loading it unverified", path)
        return None
    if not isinstance(files, dict):
        return "state.json's file checksums are not a mapping"
    for name, expected in files.items():
        if not (path / name).is_file():
            return f"{name} is missing"
        if _sha256(path / name) != expected:
            return f"{name} does not match its sha256 in state.json (corrupted or changed)"
    return None


def latest_checkpoint(out_dir: str) -> Path | None:
    """The checkpoint `latest` points to, if it checks out; else the newest one that does (WARNING).
    None when the run has no checkpoint; CheckpointError when it has some and none is usable."""
    root = Path(out_dir) / CHECKPOINTS
    pointer = root / "latest"
    candidates = sorted((d for d in root.glob("step-*") if d.is_dir() and STEP_DIR.fullmatch(d.name)),
                        key=lambda d: d.name, reverse=True) if root.is_dir() else []
    if pointer.is_file():
        named = root / pointer.read_text().strip()
        problem = checkpoint_problem(named) if named.is_dir() else "it does not exist"
        if problem is None:
            return named
        log.warning("checkpoints/latest points to %s, which cannot be used: %s", named.name, problem)
    for candidate in candidates:
        problem = checkpoint_problem(candidate)
        if problem is None:
            if pointer.is_file():
                log.warning("resuming from %s, the newest valid checkpoint", candidate.name)
            return candidate
        log.warning("skipping %s: %s", candidate.name, problem)
    if candidates or pointer.is_file():
        raise CheckpointError(f"{root} holds checkpoints but none is usable (see the warnings above); "
                              "refusing to start over them: move them away or choose another run.out_dir")
    return None


def load_weights(path: Path, module: torch.nn.Module, prefix: str = "") -> None:
    """Load trainable.safetensors (only its keys under `prefix`, prefix removed) into module."""
    try:
        state = {k[len(prefix):]: v for k, v in load_file(str(path / "trainable.safetensors")).items()
                 if k.startswith(prefix)}
        missing, unexpected = module.load_state_dict(state, strict=False)
    except Exception as err:  # a corrupt header, a tensor of another shape
        raise CheckpointError(f"{path}: trainable.safetensors does not fit the model ({_first_line(err)})") from None
    # Not stored: the tied LM head, and frozen parameters (trainable_state), which keep their value.
    frozen = {name for name, p in module.named_parameters(remove_duplicate=False) if not p.requires_grad}
    tied_ok = [m for m in missing if not m.endswith("lm_head.weight") and m not in frozen]
    if tied_ok or unexpected:
        raise CheckpointError(f"{path}: checkpoint does not fit the model (missing {tied_ok}, "
                              f"unexpected {unexpected})")


def load_checkpoint(path: Path, module: torch.nn.Module, optimizer, scheduler) -> dict[str, Any]:
    if problem := checkpoint_problem(path):
        raise CheckpointError(f"{path} cannot be used: {problem}")
    load_weights(path, module)
    name = "state.json"
    try:
        name = "optimizer.pt"
        optimizer.load_state_dict(torch.load(path / name, weights_only=True))
        name = "scheduler.pt"
        scheduler.load_state_dict(torch.load(path / name, weights_only=True))
        name = "rng.pt"
        rng = torch.load(path / name, weights_only=True)
        torch.set_rng_state(rng["torch"])
        keys, pos, has_gauss, cached = rng["numpy"]
        np.random.set_state(("MT19937", np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
        random.setstate((3, tuple(rng["python"]), None))
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        name = "state.json"
        state = json.loads((path / name).read_text())
        if not (isinstance(state.get("step"), int) and isinstance(state.get("skipped", 0), int)
                and isinstance(state.get("nonfinite_steps", 0), int)):
            raise ValueError("step, skipped and nonfinite_steps must be integers")
        return state
    except pickle.UnpicklingError as err:
        # Never torch's own advice for a refused pickle ("re-run with weights_only=False"): a file that
        # weights_only refuses was not written by this trainer, and unpickling it could run its code.
        raise CheckpointError(f"{path}: {name} cannot be loaded ({type(err).__name__}); it was not written by "
                              "this trainer, or was changed since: resume from another checkpoint") from None
    except Exception as err:  # a file of another shape, or state this machine cannot take (fewer GPUs)
        raise CheckpointError(f"{path}: {name} cannot be loaded ({_first_line(err)})") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    if "weights_only" in text:  # torch's message for a refused pickle suggests turning the safety off
        return type(err).__name__
    return f"{type(err).__name__}: {text.splitlines()[0][:200]}" if text else type(err).__name__
