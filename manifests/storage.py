"""Atomic writes to any fsspec URL: a temporary name in the same folder, renamed when complete.

On a local disk the rename is atomic; on object stores (gs://, s3://) an object appears only
when its upload completes, so a reader never sees a partial file under the final name either.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import fsspec

TEMP_MARKER = ".tmp-"
log = logging.getLogger("vlcurate")


class HashingWriter:
    """A write-only file wrapper that counts bytes and computes their sha256 on the way through."""

    def __init__(self, inner: IO[bytes]):
        self.inner = inner
        self.sha256 = hashlib.sha256()
        self.bytes = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.bytes += len(data)
        return self.inner.write(data)

    def flush(self) -> None:
        self.inner.flush()


@contextmanager
def atomic_open(url: str) -> Iterator[HashingWriter]:
    """Open `url` for writing; it appears under its name only if the block completes."""
    fs, path = fsspec.core.url_to_fs(url)
    parent, _, name = path.rpartition("/")
    temp = f"{parent}/.{name}{TEMP_MARKER}{uuid.uuid4().hex[:12]}"
    fs.makedirs(parent, exist_ok=True)
    local = is_local(fs)
    try:
        with fs.open(temp, "wb") as raw:
            writer = HashingWriter(raw)
            yield writer
            if local:  # the bytes reach the disk before the name does (object stores: upload completes)
                raw.flush()
                os.fsync(raw.fileno())
        fs.mv(temp, path)
        if local:
            _fsync_directory(parent)
    except BaseException:
        if fs.exists(temp):
            fs.rm(temp)
        raise


def is_local(fs) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")


def _fsync_directory(path: str) -> None:
    """Make a rename durable: fsync the directory entry too (POSIX; skipped where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(url: str, data: bytes) -> dict[str, Any]:
    with atomic_open(url) as out:
        out.write(data)
    return {"bytes": out.bytes, "sha256": out.sha256.hexdigest()}


def glob_under(fs, directory: str, pattern: str) -> list[str]:
    """fs.glob(pattern) inside `directory`, whose own name is taken literally: an output called
    "run [a]" is not the character class [a] (a download there finished no shard, by its own glob)."""
    return fs.glob(f"{glob.escape(directory.rstrip('/'))}/{pattern}")


def glob_files(pattern: str) -> list[str]:
    """Files matching a glob on any fsspec filesystem, sorted, as URLs fsspec can open again."""
    fs, _ = fsspec.core.url_to_fs(pattern)
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    found = sorted(fs.glob(pattern))
    regular = {p: fs.isfile(p) for p in found}
    matched = [p for p in found if regular[p]]
    skipped = [p for p in found if not regular[p] and not fs.isdir(p)]
    if skipped:  # FIFOs, sockets, devices: reading one could hang or never end
        log.warning("skipping %d special file(s) matched by %s (not regular files): %s", len(skipped), pattern,
                    ", ".join(skipped[:5]))
    if protocol not in ("file", "local"):
        matched = [f"{protocol}://{p}" for p in matched]
    return matched


def sha256_of(url: str) -> str:
    digest = hashlib.sha256()
    with fsspec.open(url, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def use_storage_options(url: str, options: dict[str, Any]) -> None:
    """Make `options` (endpoint, credentials, ...) the defaults of every fsspec filesystem of url's
    protocol in this process and the processes it starts (Beam's multi_processing workers,
    img2dataset's, DataLoader workers: fsspec reads FSSPEC_<PROTOCOL> from the environment), so
    every reader and writer of a run uses them without passing them around. They stay in memory:
    never printed, logged or written. (Dataflow's workers do not inherit them: there the workers'
    own credentials apply.)"""
    if not options:
        return
    protocol = fsspec.utils.get_protocol(url)
    if protocol in ("file", "local"):
        return
    fsspec.config.conf.setdefault(protocol, {}).update(options)
    try:
        os.environ[f"FSSPEC_{protocol.upper()}"] = json.dumps(fsspec.config.conf[protocol])
    except TypeError:  # options given in code that are not JSON (objects): this process only
        pass


def parse_storage_options(items: list[str]) -> dict[str, Any]:
    """`key=value` pairs from the command line; a value that parses as JSON is taken as JSON
    (numbers, booleans, {"endpoint_url": ...} for client_kwargs), else as a string."""
    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--storage-option {key.strip() or item!r}: expected key=value")
        try:
            options[key.strip()] = json.loads(value)
        except ValueError:
            options[key.strip()] = value
    return options
