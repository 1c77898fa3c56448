"""SIGTERM or SIGHUP during training: finish the step, write a checkpoint, then stop.

Batch schedulers (SLURM, Kubernetes, `timeout`) send SIGTERM some seconds before they kill; a run
stopped there used to lose every step since its last checkpoint (up to run.checkpoint_every). The
signal now only sets a flag, read after each step; the loop then checkpoints and raises
TrainingStopped, which `vlcurate train` reports in one line with exit status 128 + the signal.
DataLoader workers ignore it (ignore_in_worker, their worker_init_fn): torch gives them a handler
that dies on SIGTERM, and a worker killed by the process group's SIGTERM failed the step that
would have written the checkpoint. They stop when this process stops them, or when it is gone.
"""

from __future__ import annotations

import os
import signal
from contextlib import contextmanager
from collections.abc import Iterator

SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class TrainingStopped(BaseException):
    """Training stopped on a signal after writing a checkpoint; the message starts with the signal's name."""


class StopFlag:
    def __init__(self) -> None:
        self.signal: signal.Signals | None = None


@contextmanager
def stop_on_signal() -> Iterator[StopFlag]:
    """A flag that SIGTERM/SIGHUP set while the block runs (the previous handlers come back after)."""
    flag, main_pid = StopFlag(), os.getpid()

    def handler(signum: int, _frame) -> None:
        if os.getpid() == main_pid:  # a DataLoader worker ignores it: this process stops them after the checkpoint
            flag.signal = signal.Signals(signum)

    # not over an ignored signal: `nohup` ignores SIGHUP so that training outlives the terminal
    previous = {signum: signal.signal(signum, handler) for signum in SIGNALS
                if signal.getsignal(signum) is not signal.SIG_IGN}
    try:
        yield flag
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def ignore_in_worker(_worker_id: int) -> None:
    """A DataLoader worker_init_fn: the main process decides when the workers stop."""
    for signum in SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
