"""Ctrl-C, SIGTERM and SIGHUP on a running curate: one line, the conventional exit status, the run's
lock released, and a rerun told what it finds. Inside a stage, Beam wraps Ctrl-C in a RuntimeError
(290 lines of traceback and exit 1 before); SIGTERM and SIGHUP ran no clean-up at all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from pipelines.drivers.curate import OURS, CurateError, prepare_output
from pipelines.interrupts import Terminated, interrupt_status
from pipelines.io.run_dir import RunDirState, inspect_run_dir
from tests.test_cli import ROOT

QUICKSTART = str(ROOT / "manifests/recipes/quickstart.yaml")
# A terminal's Ctrl-C reaches a program that starts with SIGINT at its default; a test runner's
# background process may start with it ignored, and Python then keeps it ignored.
_DEFAULT_SIGINT = "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"


def test_an_interrupt_is_recognised_however_it_is_wrapped():
    assert interrupt_status(RuntimeError("KeyboardInterrupt [while running '00_heuristics/Keep']")) == ("Ctrl-C", 130)
    assert interrupt_status(Terminated("SIGHUP [while running 'x']")) == ("SIGHUP", 129)
    assert interrupt_status(Terminated("SIGTERM")) == ("SIGTERM", 143)
    for cut in (False, True):
        try:  # an error while cleaning up after Ctrl-C is the interrupt's, unless raised `from None`
            try:
                raise KeyboardInterrupt
            except KeyboardInterrupt as interrupt:
                raise OSError("clean-up failed") from (None if cut else interrupt)
        except OSError as err:
            assert interrupt_status(err) == (None if cut else ("Ctrl-C", 130))
    assert interrupt_status(ValueError("a bug")) is None


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_mid_run_is_one_line_and_releases_the_lock(pool_dir, tmp_path, signum):
    out = tmp_path / "out"
    command = [sys.executable, "-c", _DEFAULT_SIGINT, sys.executable, "-m", "pipelines.cli", "curate", QUICKSTART,
               "-i", f"{pool_dir}/shards/*.tar", "-o", str(out), "-q"]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    lock = out / ".vlcurate.lock"
    deadline = time.time() + 120
    while time.time() < deadline and not lock.exists() and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(1.0)  # into the pipeline
    os.killpg(proc.pid, signum)  # as a terminal (Ctrl-C, hang-up) or a scheduler's group kill does
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, stderr[-3000:]
    what = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM", signal.SIGHUP: "SIGHUP"}[signum]
    assert stderr.strip().splitlines() == [f"interrupted ({what})"]
    assert not lock.exists() and not (out / "manifest.json").exists()
    if inspect_run_dir(str(out), OURS) is RunDirState.INTERRUPTED:  # else stopped before writing anything
        with pytest.raises(CurateError, match="holds an interrupted run .* pass --overwrite"):
            prepare_output(str(out), overwrite=False)


def test_an_ignored_signal_stays_ignored_and_a_second_one_waits_for_the_clean_up():
    """`nohup` starts a command with SIGHUP ignored: the run must outlive the terminal. And a second
    signal (a hang-up, then a supervisor's TERM) used to raise inside the first one's clean-up."""
    script = (
        "import os, signal\n"
        "signal.signal(signal.SIGHUP, signal.SIG_IGN)\n"
        "from pipelines.interrupts import Terminated, raise_on_termination\n"
        "raise_on_termination()\n"
        "assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN\n"
        "os.kill(os.getpid(), signal.SIGHUP)\n"  # ignored: nothing happens
        "try:\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    raise SystemExit('SIGTERM raised nothing')\n"
        "except Terminated:\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"  # during the clean-up: waits
        "    print('cleaned up')\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "cleaned up", done.stderr[-2000:]
