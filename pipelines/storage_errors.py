"""A run stopped by its storage (a full disk, a read-only or forbidden directory) says so in one line.

Such errors reach the command from deep inside Beam, img2dataset or safetensors: Beam re-raises a
worker's OSError as a RuntimeError whose message names it ("OSError: [Errno 28] No space left on
device [while running 'WriteShards/...']"), after logging every retry's traceback; safetensors
raises its own error ("I/O error: File too large (os error 27)"). They are
infrastructure, the one kind of error allowed to stop a run, and the user needs the cause and the
path, not 200 lines of frames.
"""

from __future__ import annotations

import errno
import re

STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}
_NAMED = re.compile(r"(?:\w+Error): \[Errno (\d+)\] ([^\[\]]*?)(?::\s*'([^']*)')?\s*(?:\[while running|$)")
_RUST_IO = re.compile(r"I/O error: ([^()]+?) \(os error (\d+)\)")  # safetensors' SafetensorError


def storage_failure(err: BaseException) -> str | None:
    """One line for an error caused by storage, found anywhere in its chain; None for anything else.
    The OSError itself is preferred (it knows the path), then a message that names one."""
    chain, stack = [], [err]
    while stack:
        current = stack.pop()
        if current is not None and all(current is not c for c in chain):
            chain.append(current)
            stack.extend((current.__cause__, current.__context__))
    for current in chain:
        if isinstance(current, OSError) and current.errno in STORAGE_ERRNOS:
            return _line(current.strerror or str(current), current.filename)
    for current in chain:
        if (match := _NAMED.search(str(current))) and int(match.group(1)) in STORAGE_ERRNOS:
            return _line(match.group(2).strip(), match.group(3))
        if (match := _RUST_IO.search(str(current))) and int(match.group(2)) in STORAGE_ERRNOS:
            return _line(match.group(1).strip(), None)
    return None


def _line(reason: str, path: str | None) -> str:
    where = f" writing {path}" if path else ""
    return f"the run stopped: {reason}{where}. Free space or fix the permissions, then run it again"
