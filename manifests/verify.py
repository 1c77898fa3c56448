"""`vlcurate verify`: re-read a run against its manifest.

Every listed file is re-hashed; each shard tar is read through the shard format while it is hashed
(one pass), so its record count and keys are checked too, and with `deep` every image is decoded
with the format's one decode (EXIF applied, pixel guard).
"""

from __future__ import annotations

import hashlib
import re

import fsspec

from manifests.manifest import read_manifest
from manifests.shard_format import (IMAGE_EXTENSIONS, MAX_PIXELS, decode_image, image_member,
                                    iter_tar_records, valid_key)

_NO_MEMBER_LIMIT = 1 << 62
# Files a download writes that its manifest does not list: img2dataset's per-shard stats and the URL
# list it was given (they hold no samples). The lock exists while a run writes the directory.
_AUXILIARY = re.compile(r"_input/urls\.parquet|shards/\d+_stats\.json|\.vlcurate\.lock"
                        r"|_manifests/manifest-[\w.+-]+\.json"  # earlier manifests an older publish --replace kept
                        r"|_versions/.+")  # earlier versions a publish --replace kept (verify each on its own)


class _HashingReader:
    """A read-only file wrapper that hashes what passes through (tarfile reads sequentially)."""

    def __init__(self, inner):
        self.inner, self.sha256, self.bytes = inner, hashlib.sha256(), 0

    def read(self, size: int = -1) -> bytes:
        data = self.inner.read(size)
        self.sha256.update(data)
        self.bytes += len(data)
        return data

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


def _check_shard(fs, path: str, name: str, samples: int, deep: bool) -> tuple[list[str], str, int]:
    problems, records = [], 0
    with fs.open(path, "rb") as raw:
        reader = _HashingReader(raw)
        for record in iter_tar_records(reader, _NO_MEMBER_LIMIT):
            records += 1
            if not valid_key(record.key):
                problems.append(f"{name}: invalid key {record.key!r}")
            if deep:
                for ext in _image_members(record.parts):
                    decoded = decode_image(record.parts[ext], MAX_PIXELS)
                    if not hasattr(decoded, "size"):
                        problems.append(f"{name}: {record.key}.{ext}: {decoded.reason} ({decoded.detail})")
        reader.drain()
    if records != samples:
        problems.append(f"{name}: {records} records, manifest says {samples}")
    return problems, reader.sha256.hexdigest(), reader.bytes


def _image_members(parts: dict[str, bytes]) -> list[str]:
    """A pair's image member (`jpg`), or a document's images by position (`3.jpg`, `7.png`)."""
    pair = image_member(parts)
    if pair is not None:
        return [pair]
    return sorted(e for e in parts if "." in e and e.split(".", 1)[0].isdigit() and e.rsplit(".", 1)[1] in IMAGE_EXTENSIONS)


def verify_dataset(root: str, deep: bool = False) -> list[str]:
    """Problems found (empty when the dataset is intact)."""
    manifest = read_manifest(root)
    problems = []
    if manifest.counts.kept != sum(s.samples for s in manifest.shards):
        problems.append("counts.kept differs from the sum of shard sample counts")
    fs, base = fsspec.core.url_to_fs(root)
    fs.invalidate_cache()  # remote stores: list what is there now, not what an earlier call saw
    shards = {s.name: s.samples for s in manifest.shards}
    entries = manifest.file_entries()
    for entry in entries:
        path = f"{base.rstrip('/')}/{entry.name}"
        if not fs.exists(path):
            problems.append(f"{entry.name}: missing")
            continue
        if entry.name in shards:
            try:
                found, sha256, size = _check_shard(fs, path, entry.name, shards[entry.name], deep)
            except Exception as err:  # a damaged tar is a finding, not a crash
                problems.append(f"{entry.name}: unreadable ({type(err).__name__}: {err})")
                continue
        else:
            found, size = [], fs.size(path)
            sha256 = _sha256(fs, path) if size == entry.bytes else ""
        if size != entry.bytes:
            problems.append(f"{entry.name}: {size} bytes, manifest says {entry.bytes}")
        elif sha256 != entry.sha256:
            problems.append(f"{entry.name}: sha256 differs from the manifest")
        problems += found
    problems += _unlisted(fs, base.rstrip("/"), root.rstrip("/"), manifest, {e.name for e in entries})
    return problems


def _unlisted(fs, base: str, root: str, manifest, listed: set[str]) -> list[str]:
    """Files in the run directory that the manifest does not list (another run's, or a stray one).
    A chained run's raw/ download is checked against its own manifest (found from the URL `root`:
    `base` has lost the protocol, and read as a local path it named a folder under the cwd)."""
    raw = manifest.inputs.get("raw_manifest")
    raw_dir = raw.rsplit("/", 1)[0] + "/" if raw else None
    problems = []
    if raw_dir:
        problems += [f"{raw_dir}{p}" for p in verify_dataset(f"{root}/{raw_dir.rstrip('/')}")
                     if not p.startswith("rejected/")]  # raw's rejection files are also listed here
    for path in sorted(fs.find(base, withdirs=False)):
        name = path[len(base) + 1:]
        if name == "manifest.json" or name in listed or _AUXILIARY.fullmatch(name):
            continue
        if raw_dir and name.startswith(raw_dir):
            continue
        problems.append(f"{name}: not listed in the manifest (another run's file, or one added later)")
    return problems


def _sha256(fs, path: str) -> str:
    with fs.open(path, "rb") as f:
        reader = _HashingReader(f)
        reader.drain()
    return reader.sha256.hexdigest()
