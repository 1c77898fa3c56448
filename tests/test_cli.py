"""The `vlcurate` command line, run as a user runs it."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
COMMANDS = ["sample-data", "download", "curate", "verify", "publish", "report", "stages", "train", "eval"]  # `metadata build`: test_metaclip


def vlcurate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help(command):
    result = vlcurate(*([command] if command else []), "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout
    if command is None:
        assert all(c in result.stdout for c in COMMANDS)
    else:
        assert "Example:" in result.stdout


def test_version_is_the_installed_package_version():
    from filters.model_files import package_version

    result = vlcurate("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"vlcurate {package_version('vlcurate')}"


def test_sample_data_is_deterministic(tmp_path):
    digests = []
    for name in ("a", "b"):
        assert vlcurate("sample-data", str(tmp_path / name), "--n", "60", "--seed", "3", "--per-shard", "30").returncode == 0
        digests.append([hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((tmp_path / name).rglob("*.*"))])
    assert digests[0] == digests[1] and len(digests[0]) == 2 * 2 + 1  # 2 shards (+parquet each), urls.parquet
    # Another seed, a smaller pool, into the same folder: the earlier pool's second shard must not stay
    # behind to join the new pool under shards/*.tar; a file of the user's there is left alone.
    first = (tmp_path / "a/shards/00000.tar").read_bytes()
    (tmp_path / "a/shards/notes.txt").write_text("mine")
    again = vlcurate("sample-data", str(tmp_path / "a"), "--n", "30", "--seed", "4", "--per-shard", "30")
    assert sorted(p.name for p in (tmp_path / "a/shards").iterdir()) == ["00000.parquet", "00000.tar", "notes.txt"]
    assert (tmp_path / "a/shards/00000.tar").read_bytes() != first
    assert "removed 2 file(s) an earlier, larger sample-data run left" in again.stdout


def test_web_sample_crawl_rewritten_smaller_leaves_no_earlier_file(tmp_path):
    from pipelines.drivers.sample_web import write_crawl

    assert write_crawl(tmp_path, n=6, seed=0, per_file=2)["files"] == 3
    summary = write_crawl(tmp_path, n=2, seed=0, per_file=2)
    assert summary["removed"] == 2 and sorted(p.name for p in tmp_path.iterdir()) == ["crawl-00000.warc.gz"]


def test_curate_then_verify_end_to_end(pool_dir, tmp_path):
    out = tmp_path / "run"
    result = vlcurate("curate", "manifests/recipes/quickstart.yaml", "--input", f"{pool_dir}/shards/*.tar",
                      "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert "funnel: quickstart" in result.stdout and "manifest:" in result.stdout
    assert "read 1/4" in result.stderr  # progress, one line per input file
    verified = vlcurate("verify", str(out))
    assert verified.returncode == 0 and verified.stdout.startswith("ok:")


def test_bad_recipe_fails_before_running(tmp_path, pool_dir):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("name: bad\nstages:\n  - heuristics:\n      captoin: {}\n")
    result = vlcurate("curate", str(recipe), "--input", f"{pool_dir}/shards/*.tar", "--output", str(tmp_path / "o"))
    assert result.returncode == 2
    assert "stages.0.heuristics.captoin: unknown key 'captoin'" in result.stderr
    assert not (tmp_path / "o").exists()


def test_verify_without_manifest(tmp_path):
    result = vlcurate("verify", str(tmp_path))
    assert result.returncode == 2 and "has no manifest.json" in result.stderr


_HOLD_LOCK = """
import sys, time
from pipelines.io.run_lock import RunLockedError, run_lock
start, out = float(sys.argv[1]), sys.argv[2]
time.sleep(max(0.0, start - time.time()))  # every contender tries at the same instant
try:
    with run_lock(out):
        print("won", flush=True)
        time.sleep(float(sys.argv[3]))
except RunLockedError as err:
    print("lost:", err, flush=True)
"""


def test_concurrent_runs_into_one_directory(pool_dir, tmp_path):
    """Issue 13: processes racing for one output's lock: exactly one wins; a curate run started while
    another holds the lock stops at once naming the holder's pid, and runs once it is released."""
    import time

    out = tmp_path / "shared"
    start = time.time() + 5  # after every racer has started; the winner holds longer than any lateness
    racers = [subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(start), str(out), "5"], cwd=ROOT,
                               stdout=subprocess.PIPE, text=True) for _ in range(4)]
    results = [r.communicate(timeout=60)[0] for r in racers]
    assert sorted(line.split(":")[0].strip() for line in results) == ["lost"] * 3 + ["won"], results

    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, "0", str(out), "120"], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "won"
        args = ["curate", "manifests/recipes/quickstart.yaml", "--input", f"{pool_dir}/shards/*.tar", "--output", str(out)]
        refused = vlcurate(*args)
        assert refused.returncode == 2 and "being written by another run" in refused.stderr
        assert f"pid {holder.pid}" in refused.stderr
    finally:
        holder.kill()
        holder.wait()
    # The holder died without releasing: its pid is gone on this machine, so the next run takes over.
    assert vlcurate(*args).returncode == 0 and vlcurate("verify", str(out)).returncode == 0


def test_web_sample_crawl_through_the_obelics_recipe(tmp_path):
    """The second demo as a user runs it: a generated crawl (deterministic), curated with obelics.yaml,
    every damaged or non-page record accounted for, the run verified."""
    for name in ("a", "b"):
        made = vlcurate("sample-data", str(tmp_path / name), "--kind", "web", "--n", "40", "--per-shard", "20")
        assert made.returncode == 0, made.stderr
    assert [p.read_bytes() for p in sorted((tmp_path / "a").iterdir())] == \
        [p.read_bytes() for p in sorted((tmp_path / "b").iterdir())]
    assert "damaged_gzip_member      1" in made.stdout
    result = vlcurate("curate", "manifests/recipes/obelics.yaml", "-i", f"{tmp_path}/a/*.warc.gz", "-o",
                      str(tmp_path / "docs"))
    assert result.returncode == 0, result.stderr
    assert " documents, " in result.stdout and f"manifest: {tmp_path}/docs/manifest.json" in result.stdout
    from manifests.manifest import read_manifest

    funnel = {f.stage: f for f in read_manifest(str(tmp_path / "docs")).funnel}
    assert {"warc_not_response", "warc_bad_gzip", "not_html", "http_status_not_ok"} <= set(funnel["read"].reasons)
    assert {"paragraph_repeated_in_domain", "image_url_too_common"} <= set(funnel["document_dedup"].edits)
    verified = vlcurate("verify", str(tmp_path / "docs"))
    assert verified.returncode == 0 and "documents" in verified.stdout
    wrong = vlcurate("curate", "manifests/recipes/quickstart.yaml", "-i", f"{tmp_path}/a/*.warc.gz", "-o",
                     str(tmp_path / "wrong"))
    assert wrong.returncode != 0 and "input: {kind: document}" in wrong.stderr
