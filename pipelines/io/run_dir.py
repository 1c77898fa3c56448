"""Rules for a run's output directory, shared by `curate` and `download`.

A directory with a manifest holds a finished run: replaced only with --overwrite. One without a
manifest but with our files holds an interrupted run: replaced with --overwrite, or resumed where
the command can resume. Files vlcurate did not write are never deleted.
"""

from __future__ import annotations

from enum import Enum
from pathlib import PurePosixPath

import fsspec

from manifests.manifest import MANIFEST_NAME


class RunDirError(RuntimeError):
    """The output directory cannot be used as asked."""


class RunDirState(Enum):
    FRESH = "fresh"  # empty or new
    INTERRUPTED = "interrupted"  # our files, no manifest
    COMPLETE = "complete"  # a manifest: a finished run


def inspect_run_dir(root: str, owned: set[str]) -> RunDirState:
    fs, path = fsspec.core.url_to_fs(root)
    if not fs.exists(path):
        return RunDirState.FRESH
    present = {PurePosixPath(p).name for p in fs.ls(path, detail=False)}
    if not present:
        return RunDirState.FRESH
    foreign = sorted(present - owned - {MANIFEST_NAME})
    if foreign:
        raise RunDirError(f"{root} holds files vlcurate did not write ({', '.join(foreign[:5])}); "
                          "choose an empty or new output directory")
    return RunDirState.COMPLETE if MANIFEST_NAME in present else RunDirState.INTERRUPTED


def clear_run_dir(root: str, names: set[str]) -> None:
    """Delete the named entries of root (never anything else)."""
    fs, path = fsspec.core.url_to_fs(root)
    for name in names:
        target = f"{path}/{name}"
        if fs.exists(target):
            fs.rm(target, recursive=True)
    fs.makedirs(path, exist_ok=True)
