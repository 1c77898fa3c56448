"""What `--resume` may change. A resumed run continues the run its checkpoint holds: the optimizer's
state, the learning-rate schedule and the sampler's position all belong to that run's settings. A
changed learning rate was silently ignored (the scheduler's restored base rate won) while config.json
recorded the new one; a changed model would fail deep in load_state_dict. So only what changes how
the run goes, not what it trains, may differ; a moved path is accepted with a warning.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from trainers.config import ConfigError, TrainConfig, config_from_dict, config_to_dict

log = logging.getLogger("vlcurate")

# How the run goes: devices, speed, logging, evaluation, where its data comes from.
MAY_CHANGE = {
    "run.out_dir", "run.device", "run.compile", "run.compile_mode", "run.activation_checkpointing",
    "run.checkpoint_every", "run.log_every", "run.eval_shards", "run.eval_whole_split", "run.tensorboard",
    "run.threads", "data.workers", "data.prefetch", "data.storage_options", "data.pad_to", "data.verify_shards",
    "optim.steps", "optim.skip_nonfinite",
}
# Where something is read from: a run resumed after its data or weights moved (to a bucket, another
# disk) is fine, a different data set or model is not, and only the user can tell which.
MOVED_PATHS = {"data.shards", "llm.path", "vision.pretrained", "vision.config_dir", "adapter.init_from"}


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key != "storage_options":
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def check_resume(checkpoint: Path, config: TrainConfig) -> None:
    """ConfigError naming every setting that differs from the checkpoint's run and may not; a warning
    for each moved path."""
    saved = json.loads((checkpoint / "state.json").read_text()).get("config")
    if not isinstance(saved, dict):
        return  # a checkpoint without its config (none written so) cannot be compared
    before = _flat(config_to_dict(config_from_dict(saved)))  # old checkpoints: missing keys take defaults
    now = _flat(config_to_dict(config))
    changed = sorted(k for k in now if before.get(k) != now[k] and k not in MAY_CHANGE)
    refused = [k for k in changed if k not in MOVED_PATHS]
    for key in changed:
        if key in MOVED_PATHS:
            log.warning("--resume: %s is %r now, %r in %s: resuming as if it holds the same data/weights",
                        key, now[key], before[key], checkpoint.name)
    if refused:
        shown = "; ".join(f"{k}: {before.get(k)!r} -> {now[k]!r}" for k in refused[:6])
        more = f" (and {len(refused) - 6} more)" if len(refused) > 6 else ""
        raise ConfigError(f"--resume continues the run in {checkpoint.parent.parent} as its checkpoint "
                          f"{checkpoint.name} was configured, but {len(refused)} setting(s) differ: {shown}{more}. "
                          "Put them back, or start a new run (another run.out_dir; adapter.init_from takes "
                          "a checkpoint's weights)")
