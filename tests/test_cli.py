"""The `vlcurate` command line, run as a user runs it."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
COMMANDS = ["sample-data", "download", "curate", "verify", "stages", "train", "eval"]  # `metadata build`: test_metaclip


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


def test_sample_data_is_deterministic(tmp_path):
    digests = []
    for name in ("a", "b"):
        assert vlcurate("sample-data", str(tmp_path / name), "--n", "60", "--seed", "3", "--per-shard", "30").returncode == 0
        digests.append([hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((tmp_path / name).rglob("*.*"))])
    assert digests[0] == digests[1] and len(digests[0]) == 2 * 2 + 1  # 2 shards (+parquet each), urls.parquet
    other = tmp_path / "c"
    vlcurate("sample-data", str(other), "--n", "60", "--seed", "4", "--per-shard", "30")
    assert (other / "shards/00000.tar").read_bytes() != (tmp_path / "a/shards/00000.tar").read_bytes()


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


def test_two_concurrent_runs_into_one_directory(pool_dir, tmp_path):
    """Issue 13: two runs started together race for the output's lock: exactly one runs, the other
    stops at once naming the winner's pid, and the result verifies."""
    out = tmp_path / "shared"
    args = [sys.executable, "-m", "pipelines.cli", "curate", "manifests/recipes/quickstart.yaml",
            "--input", f"{pool_dir}/shards/*.tar", "--output", str(out)]
    runs = [subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    results = []
    for run in runs:
        _, err = run.communicate(timeout=300)
        results.append((run.pid, run.returncode, err))
    winners = [r for r in results if r[1] == 0]
    losers = [r for r in results if r[1] != 0]
    assert len(winners) == 1 and len(losers) == 1, results
    assert losers[0][1] == 2 and "being written by another run" in losers[0][2] and f"pid {winners[0][0]}" in losers[0][2]
    assert vlcurate("verify", str(out)).returncode == 0
