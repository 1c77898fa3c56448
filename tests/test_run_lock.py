"""One run per output directory: a stale lock (its pid gone) is taken over by exactly one run."""

from __future__ import annotations

import json
import multiprocessing
import os
import queue
import socket
import time

from pipelines.io.run_lock import LOCK_NAME, RunLockedError, run_lock


def _hold(root: str, barrier, results) -> None:
    barrier.wait()
    try:
        with run_lock(root):
            results.put(("held", time.monotonic()))
            time.sleep(0.5)
            results.put(("released", time.monotonic()))
    except RunLockedError:
        results.put(("refused", None))


def test_two_runs_finding_the_same_stale_lock_never_both_hold_it(tmp_path):
    """Deleting the stale lock and creating one's own let both runs in (6 of 30 trials in an
    audit); the takeover is now guarded by a create-only .takeover file and the lock is re-read."""
    context = multiprocessing.get_context("fork")
    dead = {"host": socket.gethostname(), "pid": 2 ** 22 + 7, "since_utc": "x", "command": "died"}
    for trial in range(6):
        root = tmp_path / f"out{trial}"
        root.mkdir()
        (root / LOCK_NAME).write_text(json.dumps(dead))
        barrier, results = context.Barrier(3), context.Queue()
        runs = [context.Process(target=_hold, args=(str(root), barrier, results)) for _ in range(3)]
        for run in runs:
            run.start()
        for run in runs:
            run.join(30)
        events = []
        while True:
            try:
                events.append(results.get(timeout=1))
            except queue.Empty:
                break
        timeline = [kind for kind, _ in sorted(((k, t) for k, t in events if k != "refused"), key=lambda e: e[1])]
        assert timeline and timeline == ["held", "released"] * (len(timeline) // 2)  # never two holders at once
        assert not (root / LOCK_NAME).exists() and not (root / f"{LOCK_NAME}.takeover").exists()


def test_a_run_releases_only_its_own_lock(tmp_path):
    with run_lock(str(tmp_path)):
        other = {"host": "elsewhere", "pid": 1, "since_utc": "x", "command": "took it over"}
        (tmp_path / LOCK_NAME).write_text(json.dumps(other))  # another run judged ours stale
    assert json.loads((tmp_path / LOCK_NAME).read_text()) == other
    os.unlink(tmp_path / LOCK_NAME)


def test_locks_work_where_the_file_system_has_no_hard_links(tmp_path, monkeypatch):
    """FUSE bucket mounts (gcsfuse, s3fs-fuse), vfat and some SMB shares refuse os.link: the lock
    (and publish's create-only manifest) fall back to an O_EXCL create there."""
    import errno

    from pipelines.io.run_lock import create_exclusive

    def no_link(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted", src, None, dst)

    monkeypatch.setattr(os, "link", no_link)
    with run_lock(str(tmp_path / "out")):
        assert (tmp_path / "out" / LOCK_NAME).exists()
    assert not (tmp_path / "out" / LOCK_NAME).exists()
    import fsspec

    fs = fsspec.filesystem("file")
    assert create_exclusive(fs, str(tmp_path / "m.json"), b"{}") is True
    assert create_exclusive(fs, str(tmp_path / "m.json"), b"[]") is False and (tmp_path / "m.json").read_bytes() == b"{}"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
