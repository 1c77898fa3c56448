"""A private system temp directory for the length of a run, removed afterwards.

Libraries we run leave things in the temp directory and never remove them: Beam's runners leave
empty scratch directories (three per curate run, measured), and wandb, which img2dataset imports in
its worker processes, makes two module-level TemporaryDirectory objects whose cleanup never runs in
a worker that multiprocessing ends with os._exit (two directories per download, measured). Pointing
the temp directory at one folder of ours (TMPDIR reaches the processes they start too) and removing
that folder at the end leaves /tmp as it was.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def private_tempdir(prefix: str = "vlcurate-", parent: str | None = None) -> Iterator[str]:
    """`parent`: where the folder is made (default: the current temp directory)."""
    scratch = tempfile.mkdtemp(prefix=prefix, dir=parent)
    saved = tempfile.tempdir, os.environ.get("TMPDIR")
    tempfile.tempdir, os.environ["TMPDIR"] = scratch, scratch
    try:
        yield scratch
    finally:
        tempfile.tempdir = saved[0]
        if saved[1] is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved[1]
        shutil.rmtree(scratch, ignore_errors=True)
