"""A starved step is named with a remedy sized from the measured rates (trainers/train.py starved_hint)."""

from __future__ import annotations

from trainers.train import starved_hint


def _record(wait_s: float, compute_s: float, samples: int, build_s: float, workers: int) -> dict:
    wall = wait_s + compute_s
    return {"data_wait_s": wait_s, "compute_s": compute_s, "samples_per_s": samples / wall,
            "loader_samples_per_s": samples * max(workers, 1) / build_s}


def test_a_step_waiting_for_data_gets_the_workers_that_would_keep_up():
    # 2 workers, each needing 1 s per 100 samples: 200 samples/s; the step alone does 1,000.
    record = _record(wait_s=8.0, compute_s=2.0, samples=2000, build_s=20.0, workers=2)
    hint = starved_hint(record, workers=2, world=1)
    assert "80% of the last window" in hint and "data.workers 2" in hint
    assert "alone would take 1000" in hint and "data.workers: 12 would keep up" in hint


def test_no_hint_when_the_data_path_keeps_up():
    assert starved_hint(_record(wait_s=0.05, compute_s=10.0, samples=2000, build_s=4.0, workers=4), 4, 1) is None


def test_without_workers_the_hint_asks_for_some():
    hint = starved_hint(_record(wait_s=6.0, compute_s=4.0, samples=400, build_s=6.0, workers=0), 0, 1)
    assert "data.workers 0" in hint and "would keep up" in hint
