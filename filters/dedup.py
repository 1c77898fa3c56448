"""Semantic deduplication (SemDeDup, Abbas et al. 2023) and DataComp's image-based filter.

Both start from k-means centroids of CLIP image embeddings:
- SemDeDup: inside each cluster, order samples by (higher CLIPScore, smaller key) and walk that
  order; a sample whose cosine similarity to an already kept one is >= 1 - epsilon is dropped, and
  the first such kept sample is named as its survivor. The order makes the result deterministic.
- Image-based filter (DataComp): keep samples whose nearest centroid is the nearest centroid of
  some embedding of a target set (e.g. ImageNet training images).
Embeddings arrive as float16 and are re-normalised in float32 here.
"""

from __future__ import annotations

import numpy as np

STAGE = "semantic_dedup"
CLUSTER = "semdedup_cluster"
_BLOCK = 1024  # rows per similarity block: bounds memory to BLOCK x cluster size floats


def normalised(embeddings: np.ndarray) -> np.ndarray:
    x = np.asarray(embeddings, np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def train_centroids(embeddings: np.ndarray, clusters: int, iterations: int, seed: int) -> np.ndarray:
    """Spherical k-means (faiss) -> (k, d) unit centroids; k is reduced to the number of points."""
    import faiss

    x = np.ascontiguousarray(normalised(embeddings))
    k = max(1, min(clusters, len(x)))
    if len(x) == 0:
        raise ValueError("no embeddings to train k-means on")
    kmeans = faiss.Kmeans(x.shape[1], k, niter=iterations, seed=seed, spherical=True, verbose=False,
                          min_points_per_centroid=1, max_points_per_centroid=max(256, -(-len(x) // k)))
    kmeans.train(x)
    return normalised(kmeans.centroids)


def nearest_centroid(embeddings: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """(m,) index of the most similar centroid of each embedding (inner product on unit vectors)."""
    import faiss

    index = faiss.IndexFlatIP(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, np.float32))
    _, nearest = index.search(np.ascontiguousarray(normalised(embeddings)), 1)
    return nearest[:, 0]


def target_clusters(targets: np.ndarray, centroids: np.ndarray) -> set[int]:
    return {int(c) for c in nearest_centroid(targets, centroids)}


def dedup_cluster(keys: list[str], scores: list[float], embeddings: np.ndarray,
                  epsilon: float) -> list[int | None]:
    """For each member (input order): None if kept, else the index of the kept member it duplicates."""
    n = len(keys)
    order = sorted(range(n), key=lambda i: (-scores[i], keys[i]))
    x = normalised(embeddings[order])
    threshold = 1.0 - epsilon
    survivor = np.full(n, -1, np.int64)  # in `order` positions; -1: kept
    removed = np.zeros(n, bool)
    for start in range(0, n, _BLOCK):
        stop = min(n, start + _BLOCK)
        sims = x[start:stop] @ x[start:].T  # this block against itself and everything after it
        for i in range(start, stop):
            if removed[i]:
                continue
            row = sims[i - start, i - start + 1:]
            hits = np.flatnonzero(row >= threshold) + i + 1
            hits = hits[~removed[hits]]
            removed[hits] = True
            survivor[hits] = i
    result: list[int | None] = [None] * n
    for position, original in enumerate(order):
        if survivor[position] >= 0:
            result[original] = order[survivor[position]]
    return result
