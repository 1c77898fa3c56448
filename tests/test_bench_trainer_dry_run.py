"""The GPU trainer bench (tests/bench/bench_trainer_gpu.py) runs end to end on CPU in its --dry-run:
shipped LLM configs with random weights, training, metrics reading, JSON with every field of every
row, the sweep and the --ablate rows (compiled through aot_eager); its budget planner skips what would
not fit, and a run that fails is listed instead of ending the bench."""

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

from tests.bench import trainer_bench_rows
from tests.bench.bench_trainer_gpu import not_fitting, parse_args, plan_runs, run_order
from tests.bench.trainer_bench_rows import ABLATIONS, OutOfBudget, measure_or_failure

ROOT = Path(__file__).resolve().parents[1]
ROW_FIELDS = {"llm", "llm_params", "batch", "data", "samples_per_s", "llm_tokens_per_sample", "llm_tokens_per_s",
              "caption_tokens_per_s", "step_ms", "mfu", "peak", "gpu_mem_peak_gib", "data_wait_s", "compute_s",
              "loader_samples_per_s", "wall_s", "graph_breaks", "graphs_compiled", "baseline_batch",
              "samples_per_s_ratio"}
ABLATION_FIELDS = ROW_FIELDS | {"ablation", "changes_from", "change", "compile", "compile_mode", "pad_to",
                                "compile_backend", "samples_per_s_ratio_to_previous"}
POSITIVE = ("samples_per_s", "llm_tokens_per_sample", "llm_tokens_per_s", "caption_tokens_per_s", "step_ms", "mfu",
            "wall_s", "samples_per_s_ratio", "llm_params")


def dry_run(out: Path, *options: str) -> tuple[dict, str]:
    """The bench's --dry-run in a subprocess: its JSON (the file, the same as stdout) and its stderr."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "tests/bench/bench_trainer_gpu.py", "--dry-run", "--out", str(out),
                           *options], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report == json.loads(done.stdout)
    assert report["dry_run"] and report["random_weights"] and report["complete"] and report["skipped"] == []
    return report, done.stderr


@pytest.mark.slow
def test_dry_run_writes_every_field_of_every_row(tmp_path):
    report, stderr = dry_run(tmp_path / "bench.json")
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
    assert "ratio" in stderr and "DRY RUN" in stderr


@pytest.mark.slow
def test_dry_run_ablate_labels_every_row_with_its_ratios(tmp_path):
    """--ablate: every row of ABLATIONS measured (compile rows through aot_eager, ~25 s in all), each with
    its label, the sweep's fields, and its ratios to the first row and to the row it changes."""
    report, stderr = dry_run(tmp_path / "ablate.json", "--ablate")
    rows = report["rows"]
    assert report["ablate"] == {"llm": "smollm2-135m", "batch": 4} and report["compile_backend"] == "aot_eager"
    assert [r["ablation"] for r in rows] == [a[0] for a in ABLATIONS]
    by_label = {r["ablation"]: r for r in rows}
    for row in rows:
        assert set(row) == ABLATION_FIELDS, row["ablation"]
        for key in POSITIVE + ("loader_samples_per_s",):
            assert isinstance(row[key], (int, float)) and math.isfinite(row[key]) and row[key] > 0, (key, row)
        assert row["samples_per_s_ratio"] == pytest.approx(row["samples_per_s"] / rows[0]["samples_per_s"])
        if row["changes_from"] is None:
            assert row["samples_per_s_ratio_to_previous"] is None
        else:
            previous = by_label[row["changes_from"]]
            assert row["samples_per_s_ratio_to_previous"] == pytest.approx(row["samples_per_s"] /
                                                                          previous["samples_per_s"])
        compiled = row["compile"]
        assert (row["graph_breaks"] is not None) == compiled and (row["compile_backend"] == "aot_eager") == compiled
    assert rows[0]["samples_per_s_ratio"] == 1.0 and rows[0]["pad_to"] == "longest" and not rows[0]["compile"]
    # pad_to longest reads fewer positions than max (prompt + 24 caption tokens + 8 queries)
    assert rows[0]["llm_tokens_per_sample"] < by_label["eager, max"]["llm_tokens_per_sample"]
    assert [r["compile_mode"] for r in rows[2:]] == ["default", "reduce-overhead", "max-autotune-no-cudagraphs"]
    assert report["fixed_in_code"] and any("use_cache=False" in f for f in report["fixed_in_code"])
    issue = report["issue_baseline"]
    assert "NOT measured" in issue["source"] and (issue["eager_samples_per_s"], issue["batch"]) == (462, 64)
    assert "vs first" in stderr and "DRY RUN" in stderr


def test_ablate_options():
    assert parse_args(["--ablate"]).ablate == ("smollm2-135m", 64)  # issue 19's reference point
    assert parse_args(["--ablate", "llama-1b=16"]).ablate == ("llama-1b", 16)
    dry = parse_args(["--dry-run", "--ablate"])
    assert (dry.ablate, dry.compile_backend) == (("smollm2-135m", 4), "aot_eager")
    assert dry.out == "bench_trainer_ablate_dry.json"
    gpu = parse_args(["--ablate"])
    assert (gpu.budget_s, gpu.compile_backend, gpu.out) == (240.0, "inductor", "bench_trainer_ablate.json")
    assert parse_args([]).budget_s == 330.0
    with pytest.raises(SystemExit):
        parse_args(["--ablate", "--sweep", "smollm2-135m=64"])


def test_a_failing_run_is_reported_and_the_deadline_is_not(monkeypatch):
    later = time.perf_counter() + 600

    def broken(args, config, synthetic):
        raise RuntimeError("CUDA out of memory")
    monkeypatch.setattr(trainer_bench_rows, "measure", broken)
    figures, reason = measure_or_failure(None, None, False, later)
    assert figures is None and reason == "failed: RuntimeError: CUDA out of memory"
    with pytest.raises(OutOfBudget):  # any error once the deadline has passed is the deadline's
        measure_or_failure(None, None, False, time.perf_counter() - 1)

    class CompilerFailed(Exception):  # as torch._dynamo's BackendCompilerFailed holds the alarm's error
        def __init__(self, inner):
            super().__init__(f"backend raised {inner!r}")
            self.inner_exception = inner

    def expired(args, config, synthetic):
        raise CompilerFailed(OutOfBudget())
    monkeypatch.setattr(trainer_bench_rows, "measure", expired)
    with pytest.raises(OutOfBudget):
        measure_or_failure(None, None, False, later)


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
