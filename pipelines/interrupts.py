"""Ctrl-C, SIGTERM and SIGHUP stop a command in one line, with the conventional exit status.

SIGTERM (a batch scheduler, `timeout`, `docker stop`, `kill`) and SIGHUP (a closed terminal) used
to kill the process outright: no `finally` ran, so the run's lock, Beam's temporary directory and
a hidden terminal cursor were left behind, and Beam's worker processes outlived a multi-process
curate. Here they raise `Terminated` in the main thread, as Ctrl-C raises KeyboardInterrupt, so
the same clean-up runs. Beam wraps an exception raised inside a stage with the stage's name
(`RuntimeError: KeyboardInterrupt [while running '00_heuristics/...']`), which printed 290 lines
of traceback and exited 1; `interrupt_status` recognises it however it is wrapped.
"""

from __future__ import annotations

import os
import re
import signal
import threading

TERMINATING = (signal.SIGTERM, signal.SIGHUP)
_NAMED = re.compile(r"^(?:\w+: )?(KeyboardInterrupt|SIGTERM|SIGHUP)\b")


class Terminated(BaseException):
    """A termination signal, raised where the main thread was. A BaseException, as KeyboardInterrupt
    is: `except Exception` (a record's error becoming a rejection) must not swallow it."""

    def __init__(self, message: str = "SIGTERM"):
        super().__init__(message)


_stopping = threading.Event()


def raise_on_termination() -> None:
    """SIGTERM and SIGHUP raise Terminated in this process (not in processes forked from it, e.g.
    DataLoader workers, which die as the signal says); Ctrl-C raises KeyboardInterrupt as always.
    Once either happened, Beam's threads that watch worker processes die quietly: each printed a
    traceback ("Worker subprocess exited with return code 134") as the workers went down."""
    main_pid = os.getpid()

    def handler(signum: int, _frame) -> None:
        if os.getpid() != main_pid:  # a forked child: Ctrl-C as Python has it, the others by default
            if signum == signal.SIGINT:
                raise KeyboardInterrupt  # torch's DataLoader workers end quietly on it
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        if _stopping.is_set() and signum != signal.SIGINT:
            return  # a second signal (a hang-up, then the supervisor's TERM) must not cut the clean-up short
        _stopping.set()
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Terminated(signal.Signals(signum).name)

    for signum in TERMINATING:
        if signal.getsignal(signum) is not signal.SIG_IGN:  # `nohup` ignores SIGHUP: the run must outlive the terminal
            signal.signal(signum, handler)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not when started with Ctrl-C ignored
        signal.signal(signal.SIGINT, handler)
    if not getattr(threading.excepthook, "_vlcurate", False):  # once, however often this is called
        report = threading.excepthook

        def quiet_when_stopping(args: threading.ExceptHookArgs) -> None:
            if not _stopping.is_set():
                report(args)

        quiet_when_stopping._vlcurate = True
        threading.excepthook = quiet_when_stopping


def interrupt_status(err: BaseException) -> tuple[str, int] | None:
    """(what stopped the command, its exit status) when err is, wraps or was caused by Ctrl-C or a
    termination signal; None for any other error. A message of its own that starts with the
    signal's name (the trainer's "SIGTERM: stopped after step N, checkpoint written") is kept."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, KeyboardInterrupt):
            return "Ctrl-C", 128 + signal.SIGINT
        if match := _NAMED.match(str(current)):
            name = match.group(1)
            if name == "KeyboardInterrupt":
                return "Ctrl-C", 128 + signal.SIGINT
            own = str(current).split("\n", 1)[0]
            return (name if "[while running" in own or own == name else own), 128 + signal.Signals[name]
        # as Python's traceback reads the chain: `raise ... from None` cuts it
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return None
