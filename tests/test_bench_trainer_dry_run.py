"""The GPU trainer bench (tests/bench/bench_trainer_gpu.py) runs end to end on CPU in its --dry-run:
shipped LLM configs with random weights, training, metrics reading, JSON with every field of every
row; and its budget planner skips what would not fit."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.bench.bench_trainer_gpu import not_fitting, plan_runs, run_order

ROOT = Path(__file__).resolve().parents[1]
ROW_FIELDS = {"llm", "llm_params", "batch", "data", "samples_per_s", "llm_tokens_per_sample", "llm_tokens_per_s",
              "caption_tokens_per_s", "step_ms", "mfu", "peak", "gpu_mem_peak_gib", "data_wait_s", "compute_s",
              "loader_samples_per_s", "wall_s", "graph_breaks", "graphs_compiled", "baseline_batch",
              "samples_per_s_ratio"}
POSITIVE = ("samples_per_s", "llm_tokens_per_sample", "llm_tokens_per_s", "caption_tokens_per_s", "step_ms", "mfu",
            "wall_s", "samples_per_s_ratio", "llm_params")


@pytest.mark.slow
def test_dry_run_writes_every_field_of_every_row(tmp_path):
    out = tmp_path / "bench.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "tests/bench/bench_trainer_gpu.py", "--dry-run", "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report == json.loads(done.stdout)
    assert report["dry_run"] and report["random_weights"] and report["skipped"] == []
    assert {(r["llm"], r["data"]) for r in report["rows"]} == {
        (llm, data) for llm in ("smollm2-135m", "llama-1b") for data in ("loader", "synthetic")}
    for row in report["rows"]:
        assert set(row) == ROW_FIELDS, row["llm"]
        for key in POSITIVE + (("loader_samples_per_s",) if row["data"] == "loader" else ()):
            assert isinstance(row[key], (int, float)) and math.isfinite(row[key]) and row[key] > 0, (key, row)
        assert row["data_wait_s"] >= 0 and row["compute_s"] > 0
        # The LLM reads prompt + caption with padding + visual tokens; the loss counts the caption alone.
        assert row["llm_tokens_per_s"] > row["caption_tokens_per_s"]
        assert row["llm_tokens_per_sample"] >= report["caption_tokens"] + 8  # pad_to max + 8 queries
        assert row["peak"] == "VLCURATE_PEAK_TFLOPS=1"  # the dry run's nominal CPU peak, named as such
        assert row["gpu_mem_peak_gib"] is None and row["graph_breaks"] is None  # CPU, no compile
        assert (row["loader_samples_per_s"] is None) == (row["data"] == "synthetic")  # no data path measured
    smallest = next(r for r in report["rows"] if (r["llm"], r["batch"], r["data"]) == ("smollm2-135m", 2, "loader"))
    assert smallest["samples_per_s_ratio"] == 1.0
    assert "ratio" in done.stderr and "DRY RUN" in done.stderr


def test_sweep_order_and_budget():
    assert run_order((64, 32, 256, 128)) == [32, 256, 64, 128]  # both ends first
    args = SimpleNamespace(sweeps={"a": (1, 2), "b": (4,)}, data="both")
    plan = plan_runs(args)
    assert plan == [("a", 1, False), ("a", 2, False), ("a", "best", True), ("b", 4, False), ("b", "best", True)]
    now = time.perf_counter()
    rows = [{"llm": "a", "wall_s": 30.0}]
    # "a" gets half of the 50 s left (two LLMs to go): a 30 s run does not fit; "b"'s first run gets it all.
    assert "30 s" in not_fitting(rows, "a", plan[1:], now + 50)
    assert not_fitting(rows, "a", plan[1:], now + 100) is None
    assert not_fitting(rows, "b", plan[3:], now + 50) is None
    rows.append({"llm": "a", "wall_s": 5.0})  # a batch measured again reuses its compiled code: the quickest
    assert not_fitting(rows, "a", plan[2:], now + 50, seen_shape=True) is None
    assert not_fitting(rows, "a", plan[2:], now + 50) is not None
    assert "spent" in not_fitting([], "a", plan, now - 1)
