"""A run stopped by its storage (a full disk, a read-only or forbidden directory) says so in one line.

Such errors reach the command from deep inside Beam, img2dataset or safetensors: Beam re-raises a
worker's OSError as a RuntimeError whose message names it ("OSError: [Errno 28] No space left on
device [while running 'WriteShards/...']"), after logging every retry's traceback; safetensors
raises its own error ("I/O error: File too large (os error 27)"). They are infrastructure, the one
kind of error allowed to stop a run, and the user needs the cause and the path, not 200 lines of
frames. Only the error itself is read, or one it says it was raised from (`raise ... from err`): a
bug raised while handling a PermissionError must stay a bug, with its traceback.
"""

from __future__ import annotations

import errno
import re

STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}
# Full-disk errors are never a record's fault: the stage guard lets them stop the run (routing.py)
# instead of turning every record that meets them into a rejection.
DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}
_NAMED = re.compile(r"(?:\w+Error): \[Errno (\d+)\] ([^\[\]]*?)(?::\s*'([^']*)')?\s*(?:\[while running|$)")
_RUST_IO = re.compile(r"I/O error: ([^()]+?) \(os error (\d+)\)")  # safetensors' SafetensorError


def is_disk_full(err: BaseException) -> bool:
    return isinstance(err, OSError) and err.errno in DISK_FULL_ERRNOS


def storage_failure(err: BaseException) -> str | None:
    """One line for an error caused by storage; None for anything else."""
    for current in (err, err.__cause__):
        if isinstance(current, OSError) and current.errno in STORAGE_ERRNOS:
            return _line(current.strerror or str(current), current.filename)
    text = str(err)
    if (match := _NAMED.search(text)) and int(match.group(1)) in STORAGE_ERRNOS:
        return _line(match.group(2).strip(), match.group(3))
    if (match := _RUST_IO.search(text)) and int(match.group(2)) in STORAGE_ERRNOS:
        return _line(match.group(1).strip(), None)
    return None


def _line(reason: str, path: str | None) -> str:
    where = f" ({path})" if path else ""
    return f"the run stopped: {reason}{where}. Free space or fix the permissions, then run it again"
