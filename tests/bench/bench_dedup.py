"""Benchmark 3 (issue 4): semantic dedup on 10k and 100k random-normal embeddings (512-d).

Each size runs in a fresh child process so its peak memory (max RSS) is its own. Two levels:
the filters (k-means on the training sample, nearest-centroid assignment, per-cluster dedup) and
the whole Beam stage (DirectRunner, in memory) on Samples carrying the same embeddings as float16.
Ratios are against the 10k run in the same invocation, to show how cost grows.

    .venv/bin/python tests/bench/bench_dedup.py [--sizes 10000,100000] [--clusters 100] [--beam-max 100000]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

DIM = 512


def _filters(n: int, clusters: int, train: int, queue) -> None:
    import numpy as np

    from filters.dedup import dedup_cluster, nearest_centroid, normalised, train_centroids

    rng = np.random.default_rng(0)
    x = normalised(rng.standard_normal((n, DIM)).astype(np.float32))
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    centroids = train_centroids(x[:train], clusters, 20, seed=0)
    t1 = time.perf_counter()
    labels = nearest_centroid(x, centroids)
    t2 = time.perf_counter()
    removed = 0
    keys = [f"{i:09d}" for i in range(n)]
    scores = rng.uniform(0, 0.4, n).tolist()
    for c in range(len(centroids)):
        members = np.flatnonzero(labels == c)
        result = dedup_cluster([keys[i] for i in members], [scores[i] for i in members], x[members], 0.05)
        removed += sum(r is not None for r in result)
    t3 = time.perf_counter()
    sizes = np.bincount(labels)
    queue.put({"kmeans": t1 - t0, "assign": t2 - t1, "dedup": t3 - t2, "total": t3 - t0, "removed": removed,
               "largest_cluster": int(sizes.max()), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               "data_rss_mb": base_rss / 1024})


def _beam(n: int, clusters: int, train: int, queue) -> None:
    import apache_beam as beam
    import numpy as np
    from apache_beam.metrics import Metrics

    from filters.sample import Sample
    from pipelines.stages.semantic_dedup import SemanticDedupConfig
    from pipelines.stages.semantic_dedup import SemanticDedupStage

    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    samples = []
    for i in range(n):
        s = Sample(key=f"{i:09d}", source="bench", caption="x", annotations={"clip_score": float(rng.uniform(0, 0.4))})
        s.set_vector("clip_image_embedding", x[i])
        samples.append(s)
    config = SemanticDedupConfig(clusters=clusters, train_samples=train)
    data_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # Baseline: the same Create feeding a pass-through. beam.Create embeds its elements in the
    # pipeline proto (pickled, bz2-compressed), which costs more than the stage itself here.
    t0 = time.perf_counter()
    with beam.Pipeline("DirectRunner") as p:
        _ = p | beam.Create(samples, reshuffle=False) | beam.Map(lambda s: Metrics.counter("bench", "seen").inc())
    baseline = time.perf_counter() - t0
    t0 = time.perf_counter()
    p = beam.Pipeline("DirectRunner")
    out = p | beam.Create(samples, reshuffle=False) | SemanticDedupStage(config, seed=0)
    _ = out.kept | "CountKept" >> beam.Map(lambda s: Metrics.counter("bench", "kept").inc())
    _ = out.rejected | "CountRejected" >> beam.Map(lambda r: Metrics.counter("bench", "rejected").inc())
    result = p.run()
    result.wait_until_finish()
    elapsed = time.perf_counter() - t0
    counts = {c.key.metric.name: c.committed for c in result.metrics().query()["counters"]
              if c.key.metric.namespace == "bench"}
    queue.put({"total": elapsed, "baseline": baseline, "per_s": n / max(elapsed - baseline, 1e-9), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               "data_rss_mb": data_rss, **counts})


def _child(target, *args) -> dict:
    queue = mp.get_context("spawn").Queue()
    proc = mp.get_context("spawn").Process(target=target, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--clusters", type=int, default=100)
    parser.add_argument("--train", type=int, default=50_000)
    parser.add_argument("--beam-max", type=int, default=100_000)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"random-normal {DIM}-d embeddings, k={args.clusters}, k-means sample <= {args.train}, epsilon 0.05")
    first = None
    for n in sizes:
        f = _child(_filters, n, args.clusters, min(n, args.train))
        first = first or f
        print(f"filters n={n:>7,}: kmeans {f['kmeans']:.2f} s, assign {f['assign']:.2f} s, dedup {f['dedup']:.2f} s, "
              f"total {f['total']:.2f} s ({f['total'] / first['total']:.1f}x the first size); largest cluster "
              f"{f['largest_cluster']}; removed {f['removed']}; peak RSS {f['peak_rss_mb']:.0f} MB "
              f"(embeddings alone: {f['data_rss_mb']:.0f} MB)")
    first = None
    for n in [s for s in sizes if s <= args.beam_max]:
        b = _child(_beam, n, args.clusters, min(n, args.train))
        first = first or b
        print(f"beam    n={n:>7,}: {b['total']:.2f} s, of which Create + pass-through {b['baseline']:.2f} s; "
              f"stage {b['total'] - b['baseline']:.2f} s = {b['per_s']:.0f} samples/s "
              f"({b['total'] / first['total']:.1f}x the first size); kept {b.get('kept')}, rejected {b.get('rejected', 0)}; "
              f"peak RSS {b['peak_rss_mb']:.0f} MB (inputs built: {b['data_rss_mb']:.0f} MB)")


if __name__ == "__main__":
    main()
