"""Benchmark 1 (issue 2): the heuristic stage through Beam vs the same filters in a plain loop.

Same input (10,000 real alt-text captions + generated JPEGs, as 10 webdataset shards), same work:
read the shards, run the quickstart heuristics (with exact dedup), write shards + rejections.
Beam: `curate` on DirectRunner, one worker, start-up and model loading included. Loop: the same
filter and writer functions called directly. Goal: Beam <= 1.5x the loop's time.

    .venv/bin/python tests/bench/bench_heuristics_beam.py
"""

from __future__ import annotations

import io
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from filters.exact_dedup import image_digest, split_duplicates  # noqa: E402
from filters.heuristics import HeuristicFilter  # noqa: E402
from filters.keyed_random import key_hash  # noqa: E402
from filters.sample import Rejection, Sample  # noqa: E402
from manifests.recipe import load_recipe  # noqa: E402
from pipelines.drivers.curate import curate  # noqa: E402
from pipelines.io.readers import read_file  # noqa: E402
from manifests.shard_format import write_pair_shard as write_shard  # noqa: E402
from pipelines.io.rejection_files import REJECTION_SCHEMA  # noqa: E402
from tests.bench.common import real_captions_or_skip, write_pool  # noqa: E402

REPEATS = 2
RECIPE = load_recipe(Path(__file__).resolve().parents[2] / "manifests/recipes/quickstart.yaml")


def plain_loop(paths: list[str], out: Path) -> tuple[int, int]:
    config = RECIPE.stages[0].config
    flt = HeuristicFilter(config)
    kept: dict[str, list[Sample]] = {}
    rejected: list[Rejection] = []
    batch: list[Sample] = []

    def flush():
        for outcome in flt.filter_batch(batch):
            if isinstance(outcome, Rejection):
                rejected.append(outcome)
            else:
                kept.setdefault(image_digest(outcome), []).append(outcome)
        batch.clear()

    for path in paths:
        for record in read_file(path, RECIPE.input):
            if isinstance(record, Rejection):
                rejected.append(record)
                continue
            batch.append(record)
            if len(batch) == config.batch_size:
                flush()
    flush()
    survivors = []
    for copies in kept.values():
        first, dups = split_duplicates(copies)
        survivors.append(first)
        rejected.extend(Rejection.of(d, "heuristics", "duplicate_image", first.key) for d in dups)
    survivors.sort(key=lambda s: (key_hash(s.key, RECIPE.seed, "shard-order"), s.key))
    per = RECIPE.output.samples_per_shard
    for index in range(0, len(survivors), per):
        write_shard(str(out), index // per, survivors[index:index + per])
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist([r.as_row() for r in rejected], schema=REJECTION_SCHEMA), buffer)
    (out / "rejected.parquet").write_bytes(buffer.getvalue())
    return len(survivors), len(rejected)


def main() -> None:
    pairs = real_captions_or_skip()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = write_pool(tmp / "pool", pairs)
        n = len(pairs)

        loop_times, beam_times = [], []
        for rep in range(REPEATS):  # interleaved, so warm-up and machine noise hit both paths alike
            started = time.perf_counter()
            loop_kept, loop_rejected = plain_loop(paths, tmp / f"loop{rep}")
            loop_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            result = curate(RECIPE, str(tmp / "pool/*.tar"), str(tmp / f"beam{rep}"),
                            beam_args=["--direct_num_workers=1"])
            beam_times.append(time.perf_counter() - started)
        loop_s, beam_s = min(loop_times), min(beam_times)

    counts = result.manifest.counts
    assert (counts.kept, counts.rejected) == (loop_kept, loop_rejected), "both paths must do the same work"
    print(f"samples: {n:,}  kept {counts.kept:,}  rejected {counts.rejected:,}")
    print(f"plain loop : {loop_s:6.2f} s  {n / loop_s:8.0f} samples/s")
    print(f"beam direct: {beam_s:6.2f} s  {n / beam_s:8.0f} samples/s "
          f"(preflight {result.manifest.timings_s['preflight']:.2f} s, pipeline {result.manifest.timings_s['pipeline']:.2f} s)")
    print(f"all runs (s): loop {[round(t, 2) for t in loop_times]}, beam {[round(t, 2) for t in beam_times]}")
    print(f"ratio beam/loop time: {beam_s / loop_s:.2f}x  (goal <= 1.5x)")


if __name__ == "__main__":
    main()
