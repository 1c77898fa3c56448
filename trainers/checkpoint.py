"""Checkpoints: trainable weights (safetensors), optimizer, scheduler, RNG states, data position and
config, written into a temporary directory that is renamed into place, then `latest` is updated.
A run killed at any moment leaves the previous checkpoint intact. Loads use weights_only."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

CHECKPOINTS = "checkpoints"


def trainable_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    # Tied weights (the tiny LM's embedding and head) are stored once; safetensors refuses shared memory.
    seen, state = set(), {}
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
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    _, keys, pos, has_gauss, cached = np.random.get_state()
    rng = {"torch": torch.get_rng_state(), "numpy": [keys.tolist(), int(pos), int(has_gauss), float(cached)],
           "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    torch.save(rng, tmp / "rng.pt")
    (tmp / "state.json").write_text(json.dumps({"step": step, **state}, indent=2))
    for f in tmp.iterdir():  # data on disk before the rename makes it visible
        with open(f, "rb") as handle:
            os.fsync(handle.fileno())
    shutil.rmtree(final, ignore_errors=True)
    os.rename(tmp, final)
    pointer = root / ".latest.tmp"
    pointer.write_text(final.name)
    os.replace(pointer, root / "latest")
    return final


def latest_checkpoint(out_dir: str) -> Path | None:
    pointer = Path(out_dir) / CHECKPOINTS / "latest"
    if not pointer.is_file():
        return None
    path = pointer.parent / pointer.read_text().strip()
    return path if path.is_dir() else None


def load_weights(path: Path, module: torch.nn.Module, prefix: str = "") -> None:
    """Load trainable.safetensors (only its keys under `prefix`, prefix removed) into module."""
    state = {k[len(prefix):]: v for k, v in load_file(str(path / "trainable.safetensors")).items()
             if k.startswith(prefix)}
    missing, unexpected = module.load_state_dict(state, strict=False)
    tied_ok = [m for m in missing if not m.endswith("lm_head.weight")]
    if tied_ok or unexpected:
        raise ValueError(f"{path}: checkpoint does not fit the model (missing {tied_ok}, unexpected {unexpected})")


def load_checkpoint(path: Path, module: torch.nn.Module, optimizer, scheduler) -> dict[str, Any]:
    load_weights(path, module)
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    rng = torch.load(path / "rng.pt", weights_only=True)
    torch.set_rng_state(rng["torch"])
    keys, pos, has_gauss, cached = rng["numpy"]
    np.random.set_state(("MT19937", np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    random.setstate((3, tuple(rng["python"]), None))
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return json.loads((path / "state.json").read_text())
