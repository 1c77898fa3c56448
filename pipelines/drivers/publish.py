"""`vlcurate publish RUN DEST`: copy a finished run to any fsspec URL, safely and resumably.

1. Every listed file must exist locally; each is hashed while it is uploaded (one read), and a file
   that does not match its manifest's sha256 stops the publish before any manifest is written.
2. Data files (shards, parquets, rejection tables, reports, dataset card) are uploaded in parallel,
   with a progress bar in bytes; s3fs and gcsfs upload large files in parts. A file already at the
   destination with the same size and sha256 is skipped, so a publish killed mid-way resumes where
   it stopped. Readers trust only what the manifest lists, so a half-copied file is harmless.
3. The manifest goes last, create-only (`xb`: S3 `If-None-Match: *`, GCS `ifGenerationMatch=0`,
   exclusive create elsewhere): an existing published set is never overwritten, unless `replace`.

`replace` puts a new version where readers find the old one, and never leaves a manifest that lists
files it does not match (the same names are written again, so the old files cannot stay in place):
every local file is checked against the new manifest before anything is written; the previous
version is copied whole, manifest included, to `_versions/<its created time>/` (server-side copies on
object stores; `vlcurate verify DEST/_versions/...` checks it); then the live manifest is removed, so
for the length of the upload readers find no set rather than a mixed one, and a publish stopped there
resumes as a first publish; the new manifest goes last, and files only the old version listed are
removed from the top level (they are kept in `_versions/`).

Storage options (endpoint, credentials) come from the caller or the standard credential chains;
they are never printed, logged, or written to the manifest.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import fsspec
from tqdm import tqdm

from manifests.manifest import MANIFEST_NAME, Manifest, ManifestError, read_manifest
from manifests.storage import is_local, use_storage_options
from pipelines.io.run_lock import RunLockedError, create_exclusive, run_lock

log = logging.getLogger("vlcurate")


class PublishError(RuntimeError):
    """Publishing cannot go on; the message is one line, with no secret in it."""


@dataclass
class PublishResult:
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    bytes_uploaded: int = 0
    manifest_url: str = ""
    replaced: str | None = None  # where the previous manifest was kept, with replace


def publish(run: str, dest: str, replace: bool = False, storage_options: dict[str, Any] | None = None,
            threads: int = 8, progress: bool = True) -> PublishResult:
    run, dest = run.rstrip("/"), dest.rstrip("/")
    use_storage_options(dest, storage_options or {})
    if fsspec.utils.get_protocol(run) not in ("file", "local"):  # a run in a bucket: the same -S options
        use_storage_options(run, storage_options or {})
    if _overlap(run, dest):  # into itself, --replace removed the run's own manifest; into a folder of it, copies
        raise PublishError(f"{dest} and the run {run} overlap (one is, or holds, the other): publish to a "
                           "destination outside the run")
    try:
        manifest = read_manifest(run)
    except (FileNotFoundError, NotADirectoryError):
        raise PublishError(f"{run} has no manifest.json: only a finished run can be published") from None
    except Exception as err:  # a store that refuses us: one line, no secrets
        raise PublishError(one_line(err, run)) from None
    fs, base = _remote(dest)
    local_store = is_local(fs)
    if not local_store:
        bucket = base.split("/", 1)[0]
        try:  # listing tells a missing bucket (FileNotFoundError) from refused credentials (exists() says False to both)
            fs.ls(bucket, detail=False)
        except FileNotFoundError:
            raise PublishError(f"{dest}: the bucket {bucket!r} does not exist (create it first, or check the URL)") \
                from None
        except Exception as err:
            raise PublishError(one_line(err, dest)) from None
    try:  # one publish per destination: two at once overwrote each other's files under one manifest
        with run_lock(dest):
            return _publish_to(run, dest, manifest, fs, base, local_store, replace, threads, progress)
    except RunLockedError as err:
        raise PublishError(str(err).replace("being written by another run", "being published to by another run")
                           .replace("choose another --output", "choose another destination")) from None


def _overlap(run: str, dest: str) -> bool:
    def place(url: str) -> tuple[str, str]:
        protocol, path = fsspec.core.split_protocol(url)
        protocol = protocol if protocol not in (None, "local") else "file"
        return protocol, (os.path.realpath(path) if protocol == "file" else path).rstrip("/")

    (here, a), (there, b) = place(run), place(dest)
    return here == there and (a == b or a.startswith(b + "/") or b.startswith(a + "/"))


def _publish_to(run: str, dest: str, manifest: Manifest, fs, base: str, local_store: bool, replace: bool,
                threads: int, progress: bool) -> PublishResult:
    previous = _existing_manifest(fs, base, dest)
    if previous is not None and not replace:
        raise PublishError(f"{dest} already holds a published set ({MANIFEST_NAME}); pass --replace to publish a "
                           "new version over it (the old version is kept under _versions/)")
    entries = manifest.file_entries()
    local_fs, local_base = fsspec.core.url_to_fs(run)
    missing = [e.name for e in entries if not local_fs.exists(f"{local_base}/{e.name}")]
    if missing:
        raise PublishError(f"{run}: {missing[0]} is listed in its manifest but missing; rerun it before publishing")
    result = PublishResult()
    if previous is not None:  # nothing may be written before every local file is known to be right
        _check_local(local_fs, local_base, entries, run, threads, progress)
        result.replaced = _keep_previous(fs, base, previous, dest, local_store, threads)
        _call(lambda: fs.rm_file(f"{base}/{MANIFEST_NAME}"), dest)
    # One listing of what is there already (a HEAD per file cost half the publish time, measured).
    there = {path.rstrip("/"): info.get("size") for path, info in
             _call(lambda: fs.find(base, detail=True), dest).items()}
    mismatched: list[str] = []
    with tqdm(total=sum(e.bytes for e in entries), unit="B", unit_scale=True, desc=f"publish {dest}",
              disable=not progress) as bar:
        def one(entry) -> bool:
            """Skip what is already there, whole; else upload, hashing the local file on the way (one
            read): a file that does not match the manifest is reported and no manifest is written."""
            target = f"{base}/{entry.name}"
            if there.get(fs._strip_protocol(target)) == entry.bytes and _same(fs, target, entry.bytes, entry.sha256):
                bar.update(entry.bytes)
                return False
            _parent_dir(fs, target, local_store, dest)
            with local_fs.open(f"{local_base}/{entry.name}", "rb") as src:
                digest = _call(lambda: _copy(src, fs, target, bar), dest)
            if digest != entry.sha256:
                mismatched.append(entry.name)
            return True

        with ThreadPoolExecutor(max(1, threads)) as pool:
            for entry, uploaded in zip(entries, pool.map(one, entries)):
                (result.uploaded if uploaded else result.skipped).append(entry.name)
                result.bytes_uploaded += entry.bytes if uploaded else 0
    if mismatched:
        raise PublishError(f"{run}: {sorted(mismatched)[0]} does not match its manifest's sha256 (changed since the "
                           "run?); no manifest was published, rerun the run and publish again")
    with local_fs.open(f"{local_base}/{MANIFEST_NAME}", "rb") as f:
        manifest_bytes = f.read()
    try:  # create-only and whole: on a local disk "xb" made the name visible, empty, at open
        created = create_exclusive(fs, f"{base}/{MANIFEST_NAME}", manifest_bytes)
    except Exception as err:
        raise PublishError(one_line(err, dest)) from None
    if not created:
        raise PublishError(f"{dest} got a manifest from another publish while this one ran; this one's was not "
                           "written")
    # What only the replaced version listed is in _versions/ now. A replace stopped after it removed the
    # live manifest resumes as a first publish: the newest kept version says what it replaced.
    superseded = previous if previous is not None else _newest_kept(fs, base, there, dest)
    if superseded is not None:
        listed = {e.name for e in entries}
        stale = [f"{base}/{e.name}" for e in superseded.file_entries() if e.name not in listed]
        for path in stale:
            if _call(lambda: fs.exists(path), dest):
                _call(lambda: fs.rm_file(path), dest)
    result.manifest_url = f"{dest}/{MANIFEST_NAME}"
    return result


VERSIONS = "_versions"


def _check_local(local_fs, local_base: str, entries, run: str, threads: int, progress: bool) -> None:
    """Hash every local file against the manifest (a replace may not start on a run that changed)."""
    def digest(entry) -> str:
        sha = hashlib.sha256()
        with local_fs.open(f"{local_base}/{entry.name}", "rb") as f:
            while chunk := f.read(8 << 20):
                sha.update(chunk)
                bar.update(len(chunk))
        return sha.hexdigest()

    with tqdm(total=sum(e.bytes for e in entries), unit="B", unit_scale=True, desc=f"check {run}",
              disable=not progress) as bar, ThreadPoolExecutor(max(1, threads)) as pool:
        wrong = [e.name for e, got in zip(entries, pool.map(digest, entries)) if got != e.sha256]
    if wrong:
        raise PublishError(f"{run}: {sorted(wrong)[0]} does not match its manifest's sha256 (changed since the "
                           "run?); nothing was written, the published set is as it was")


def _keep_previous(fs, base: str, previous: Manifest, dest: str, local_store: bool, threads: int) -> str:
    """Copy the published version, whole, to _versions/<created>/ (its manifest last); return that folder.
    A file it lists that is missing at the destination is named in a warning (verify the copy)."""
    folder = f"{VERSIONS}/{previous.created_utc.replace(':', '')}"
    old_manifest = _call(lambda: _read(fs, f"{base}/{MANIFEST_NAME}"), dest)

    def keep(entry) -> str | None:
        source, target = f"{base}/{entry.name}", f"{base}/{folder}/{entry.name}"
        if not _call(lambda: fs.exists(source), dest):
            return entry.name
        _parent_dir(fs, target, local_store, dest)
        _call(lambda: fs.copy(source, target), dest)  # server-side on S3 and GCS
        return None

    with ThreadPoolExecutor(max(1, threads)) as pool:
        gone = [name for name in pool.map(keep, previous.file_entries()) if name is not None]
    if gone:
        log.warning("the published set at %s lacked %d file(s) its manifest lists (e.g. %s); %s/%s keeps the rest",
                    dest, len(gone), gone[0], dest, folder)
    _parent_dir(fs, f"{base}/{folder}/{MANIFEST_NAME}", local_store, dest)
    _call(lambda: fs.pipe_file(f"{base}/{folder}/{MANIFEST_NAME}", old_manifest), dest)
    log.info("the previous version of %s is kept in %s/%s", dest, dest, folder)
    return folder


def _newest_kept(fs, base: str, there: dict[str, Any], dest: str) -> Manifest | None:
    """The manifest of the newest version in _versions/ (folders are named by created time), if any."""
    prefix = fs._strip_protocol(f"{base}/{VERSIONS}").rstrip("/") + "/"
    kept = sorted(p for p in there if p.startswith(prefix) and p.endswith(f"/{MANIFEST_NAME}")
                  and p[len(prefix):].count("/") == 1)
    if not kept:
        return None
    return Manifest.model_validate_json(_call(lambda: _read(fs, kept[-1]), dest))


def _parent_dir(fs, target: str, local_store: bool, dest: str) -> None:
    if local_store:  # object stores have no directories (and s3fs's makedirs would create a bucket)
        _call(lambda: fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True), dest)


def _remote(dest: str):
    try:
        fs, base = fsspec.core.url_to_fs(dest)
    except (ImportError, ValueError, TypeError) as err:
        raise PublishError(f"cannot open {dest}: {type(err).__name__}: {err}") from None
    fs.invalidate_cache()  # a cached listing from before would make a resume trust what is gone
    return fs, base.rstrip("/")


def _existing_manifest(fs, base: str, dest: str) -> Manifest | None:
    path = f"{base}/{MANIFEST_NAME}"
    exists = _call(lambda: fs.exists(path), base)
    if not exists:
        return None
    try:
        return Manifest.model_validate_json(_read(fs, path))
    except ValueError:  # pydantic's ValidationError: empty, cut or not ours
        raise PublishError(f"{dest}/{MANIFEST_NAME} is not a readable manifest (empty or cut short: a publish that "
                           "stopped while writing it?); delete it and publish again") from None


def _read(fs, path: str) -> bytes:
    with fs.open(path, "rb") as f:
        return f.read()


def _same(fs, path: str, size: int, sha256: str) -> bool:
    """Already there, whole: same size, then the same sha256 (streamed; only for same-size files)."""
    try:
        if fs.size(path) != size:
            return False
    except FileNotFoundError:
        return False
    except Exception as err:
        raise PublishError(one_line(err, path)) from None
    digest = hashlib.sha256()
    with fs.open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            digest.update(chunk)
    return digest.hexdigest() == sha256


def _copy(src, fs, target: str, bar) -> str:
    """Upload src to target; the sha256 of what was sent."""
    digest = hashlib.sha256()
    with fs.open(target, "wb") as out:  # s3fs/gcsfs switch to multipart uploads past their block size
        while chunk := src.read(8 << 20):
            digest.update(chunk)
            out.write(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def _call(fn, where: str):
    try:
        return fn()
    except PublishError:
        raise
    except Exception as err:
        raise PublishError(one_line(err, where)) from None


# Whole words: "extra_forbidden" (pydantic), a size of 1403 bytes or a key named credentials_file
# were read as refused credentials.
_REFUSED = re.compile(r"(?<![\w])(?:invalidaccesskeyid|signaturedoesnotmatch|accessdenied|access denied|"
                      r"access key id|forbidden|403|401|unauthorized|invalid credentials|no credentials|"
                      r"credentials were not found|unable to locate credentials|anonymous caller)(?![\w])")


def one_line(err: BaseException, where: str) -> str:
    """What went wrong, in one line a user can act on; never the storage options."""
    if isinstance(err, ManifestError):
        return str(err)
    text = f"{type(err).__name__}: {err}"
    lowered = text.lower()
    if "nosuchbucket" in lowered or "bucket does not exist" in lowered or "specified bucket does not exist" in lowered:
        return f"{where}: the bucket does not exist (create it first, or check the URL)"
    if isinstance(err, PermissionError) or _REFUSED.search(lowered):
        return f"{where}: access refused: check the credentials (key, secret, token) for this store"
    unknown = re.search(r"unexpected keyword argument '(\w+)'", text)
    if isinstance(err, TypeError) and unknown:  # the store's client refused a storage option's name
        return (f"{where}: {unknown.group(1)!r} is not an option of this store (check the -S / storage_options "
                "names, e.g. endpoint_url, key, secret, client_kwargs)")
    return f"{where}: {text.splitlines()[0][:300]}"
