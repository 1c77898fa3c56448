"""Rules for a run's output directory, shared by `curate` and `download`.

A directory with a manifest holds a finished run: replaced only with --overwrite. One without a
manifest but with our files holds an interrupted run: replaced with --overwrite, or resumed where
the command can resume. vlcurate deletes only files it wrote: in a finished run those its manifest
lists (and the manifest, a download's URL table and per-shard stats); in an interrupted run (no
manifest) files whose names only vlcurate produces. Any other file anywhere below the directory
stops the run with its name, even with --overwrite.
"""

from __future__ import annotations

import re
from enum import Enum

import fsspec

from manifests.manifest import MANIFEST_NAME, read_manifest
from manifests.storage import TEMP_MARKER
from pipelines.io.run_lock import LOCK_NAME, TAKEOVER_SUFFIX


class RunDirError(RuntimeError):
    """The output directory cannot be used as asked."""


class RunDirState(Enum):
    FRESH = "fresh"  # empty or new
    INTERRUPTED = "interrupted"  # our files, no manifest
    COMPLETE = "complete"  # a manifest: a finished run


# Names only vlcurate writes, relative to a run directory (`prefix` for a nested one, e.g. raw/).
CURATE_FILES = (r"shards/\d{5,}\.(tar|parquet)", r"metadata/\d{5,}\.parquet",  # shards/*.parquet: format 2
                r"rejected/[a-z0-9_]+-\d{5,}\.parquet", r"reports/[\w.-]+", r"_run/.+", r"README\.md",
                r"report\.html", r"shards/sizes\.json", r"shards/\d{5,}_stats\.json")
DOWNLOAD_FILES = (r"shards/\d{5,}\.(tar|parquet)", r"shards/\d{5,}_stats\.json", r"shards/_tmp/.+",
                  r"_input/urls\.parquet", r"rejected/download-\d{5,}\.parquet", r"README\.md",
                  r"report\.html")
_ALWAYS = (re.escape(MANIFEST_NAME), re.escape(LOCK_NAME), rf"{re.escape(LOCK_NAME)}(\.takeover)?\.\d+\.[0-9a-f]+\.tmp",
           rf"{re.escape(LOCK_NAME)}\.takeover",
           rf"(.+/)?\.[^/]+{re.escape(TEMP_MARKER)}[0-9a-f]+")


# What a finished run leaves beside the files its manifest lists: the manifest, and a download's
# URL table and img2dataset's per-shard stats.
_FINISHED_EXTRAS = (r"_input/urls\.parquet", r"shards/\d{5,}_stats\.json")


def ours_matcher(patterns: tuple[str, ...], nested: dict[str, tuple[str, ...]] | None = None):
    """name -> whether vlcurate writes files of that name (relative to the run directory)."""
    rules = [*patterns, *_ALWAYS]
    for prefix, inner in (nested or {}).items():
        rules += [f"{re.escape(prefix)}/(?:{p})" for p in (*inner, *_ALWAYS)]
    compiled = re.compile("|".join(f"(?:{r})" for r in rules))
    return lambda name: compiled.fullmatch(name) is not None


def _files(root: str) -> tuple[object, str, list[str]]:
    fs, path = fsspec.core.url_to_fs(root)
    base = path.rstrip("/")
    if not fs.exists(base):
        return fs, base, []
    if fs.isfile(base):  # fs.find would list the file itself, under the empty name
        raise RunDirError(f"{root} is a file, not a directory; choose another output directory")
    return fs, base, sorted(p[len(base) + 1:] for p in fs.find(base, withdirs=False))


def _listed(root: str, name: str) -> set[str]:
    """The files a finished run's manifest lists (its own and, for chained runs, raw/'s)."""
    prefix = name[: -len(MANIFEST_NAME)]
    manifest = read_manifest(f"{root.rstrip('/')}/{prefix}".rstrip("/"))
    return {f"{prefix}{entry.name}" for entry in manifest.file_entries()}


def inspect_run_dir(root: str, ours) -> RunDirState:
    """The directory's state; RunDirError naming any file vlcurate did not write."""
    fs, base, names = _files(root)
    names = [n for n in names if n != LOCK_NAME]
    if not names:
        return RunDirState.FRESH
    listed: set[str] = set()
    prefixes = []
    for name in names:
        if name == MANIFEST_NAME or name.endswith(f"/{MANIFEST_NAME}"):
            try:
                listed |= _listed(root, name)
                prefixes.append(name[: -len(MANIFEST_NAME)])
            except Exception:  # an unreadable manifest lists nothing; the name rules still apply
                pass
    if "" in prefixes:
        # A finished run says what it wrote: a user's notebook in reports/ or a shard of their own
        # named like ours is not ours, however its name looks.
        ours = ours_matcher(_FINISHED_EXTRAS, {p.rstrip("/"): _FINISHED_EXTRAS for p in prefixes if p})
    foreign = [n for n in names if n not in listed and not ours(n)]
    if foreign:
        raise RunDirError(f"{root} holds files vlcurate did not write ({', '.join(foreign[:5])}"
                          f"{', ...' if len(foreign) > 5 else ''}); move them away or choose another output directory")
    return RunDirState.COMPLETE if MANIFEST_NAME in names else RunDirState.INTERRUPTED


def clear_run_dir(root: str, ours, keep_prefixes: tuple[str, ...] = ()) -> None:
    """Delete the files vlcurate wrote below root (never anything else), except under keep_prefixes."""
    inspect_run_dir(root, ours)  # refuses before deleting anything when a foreign file is there
    fs, base, names = _files(root)
    # manifests first: for the moment of deleting, readers find no run rather than a run missing files
    for name in sorted(names, key=lambda n: not (n == MANIFEST_NAME or n.endswith(f"/{MANIFEST_NAME}"))):
        if name in (LOCK_NAME, f"{LOCK_NAME}{TAKEOVER_SUFFIX}") or any(name.startswith(p) for p in keep_prefixes):
            continue
        fs.rm(f"{base}/{name}")
    parents = {"/".join(n.split("/")[:i]) for n in names for i in range(1, n.count("/") + 1)}
    for directory in sorted(parents, key=len, reverse=True):
        try:
            if not fs.ls(f"{base}/{directory}", detail=False):
                fs.rmdir(f"{base}/{directory}")
        except (FileNotFoundError, OSError):
            pass
    fs.makedirs(base, exist_ok=True)
