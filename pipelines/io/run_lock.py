"""One run at a time per output directory: an exclusive lock object, OUT/.vlcurate.lock.

Created with create-if-absent semantics (on local disks a complete temporary file hard-linked into
place, which fails if the name exists; elsewhere fsspec's "xb" mode, a conditional put on object
stores whose driver supports it, e.g. s3fs's If-None-Match), holding who took it, never seen empty. A second
run into the same directory stops with a message naming the holder. A lock left by a run that died
on this machine (its pid is gone) is taken over with a warning; any other lock is removed by hand.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import sys
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone

import fsspec

log = logging.getLogger("vlcurate")
LOCK_NAME = ".vlcurate.lock"
TAKEOVER_SUFFIX = ".takeover"
_NO_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EXDEV, errno.EMLINK}


class RunLockedError(RuntimeError):
    """Another run holds the output directory."""


class OutputUnwritableError(RunLockedError):
    """The output directory cannot be created or written: taking the lock is a run's first write, so
    this is where an unwritable output shows (drivers turn it into their one-line error, as a lock's)."""


def _unwritable(root: str, err: OSError) -> OutputUnwritableError:
    if isinstance(err, (FileExistsError, NotADirectoryError)):
        return OutputUnwritableError(f"output {root}: a file is in the way (it, or a folder above it, is not a directory)")
    return OutputUnwritableError(f"cannot write the output {root}: {err.strerror or err}; choose another --output")


def _holder() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "since_utc":
            datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": " ".join(sys.argv)[:500]}


def _dead_here(holder: dict) -> bool:
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def create_exclusive(fs, path: str, data: bytes) -> bool:
    """Create path holding data, only if absent, so that no reader ever sees it empty: on a local
    disk a complete temporary file is hard-linked into place (link fails if the name exists); on
    object stores a create-only put makes the object appear whole or not at all."""
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol in ("file", "local"):
        temp = f"{path}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        with open(temp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(temp, path)
            return True
        except FileExistsError:
            return False
        except OSError as err:  # no hard links here (FUSE bucket mounts, vfat, some SMB): O_EXCL create,
            if err.errno not in _NO_LINKS:  # visible a moment before its bytes are, the best these offer
                raise
            try:
                with open(path, "xb") as f:
                    f.write(data)
                return True
            except FileExistsError:
                return False
        finally:
            os.unlink(temp)
    try:
        with fs.open(path, "xb") as f:
            f.write(data)
        return True
    except FileExistsError:
        return False


@contextmanager
def run_lock(root: str):
    """Hold OUT/.vlcurate.lock for the duration of the block."""
    fs, base = fsspec.core.url_to_fs(root)
    path = f"{base.rstrip('/')}/{LOCK_NAME}"
    mine = _holder()
    data = json.dumps(mine).encode("utf-8")
    try:
        fs.makedirs(base, exist_ok=True)
        created = create_exclusive(fs, path, data)
    except OSError as err:  # PermissionError, a read-only file system, a file where the folder should be
        raise _unwritable(root, err) from None
    if not created:
        try:
            with fs.open(path, "rb") as f:
                holder = json.loads(f.read().decode("utf-8"))
        except Exception:  # unreadable or half-written: still someone's lock
            holder = {}
        if _dead_here(holder):
            _take_over(fs, path, holder, data, root)
        else:
            who = (f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('since_utc')} "
                   f"({holder.get('command', '?')})") if holder else "an unknown holder"
            raise RunLockedError(f"{root} is being written by another run: {who}. Wait for it, or if it died, "
                                 f"delete {root.rstrip('/')}/{LOCK_NAME}")
    try:
        yield mine
    finally:
        try:  # only our own lock: a run that took over a lock it judged stale must keep it
            with fs.open(path, "rb") as f:
                if f.read() == data:
                    fs.rm(path)
        except FileNotFoundError:
            pass


def _take_over(fs, path: str, stale: dict, data: bytes, root: str) -> None:
    """Replace a dead run's lock with ours. Two runs may find the same stale lock at once: deleting it
    and creating ours let both succeed (one deleted the other's fresh lock). So the takeover is
    itself taken with a create-only PATH.takeover, the lock is re-read under it, and replaced whole."""
    guard = f"{path}{TAKEOVER_SUFFIX}"
    if not create_exclusive(fs, guard, data):
        raise RunLockedError(f"{root} is being taken over by another run (a stale lock); if none is running, "
                             f"delete {guard}")
    try:
        try:
            with fs.open(path, "rb") as f:
                current = json.loads(f.read().decode("utf-8"))
        except FileNotFoundError:
            current = None
        except Exception:
            current = {}
        if current is not None and current != stale:
            raise RunLockedError(f"{root} was locked again by another run while taking over a stale lock")
        log.warning("taking over %s/%s: pid %s on this machine is gone", root, LOCK_NAME, stale.get("pid"))
        if current is not None:
            fs.rm(path)
        if not create_exclusive(fs, path, data):
            raise RunLockedError(f"{root} was locked again by another run while taking over a stale lock")
    finally:
        try:
            fs.rm(guard)
        except FileNotFoundError:  # removed meanwhile: nothing to release
            pass
