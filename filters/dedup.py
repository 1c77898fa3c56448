"""Semantic deduplication (SemDeDup, Abbas et al. 2023) and DataComp's image-based filter.

Both start from k-means centroids of CLIP image embeddings:
- SemDeDup: inside each cluster, order samples by (higher CLIPScore, smaller key) and walk that
  order; a sample whose cosine similarity to an already kept one is >= 1 - epsilon is dropped, and
  the first such kept sample is named as its survivor. The order makes the result deterministic.
  This differs from the paper's code on purpose (facebookresearch/SemDeDup: members sorted by
  distance to the centroid, farthest first, and a member dropped when its similarity to *any*
  earlier member is above 1 - epsilon): of a duplicate pair we keep the better-captioned one, not
  the one farther from the centroid, and in a chain A~B~C with A not ~ C we keep A and C (C's only
  duplicate was dropped) where the paper drops B and C.
  Epsilon can instead be chosen from a retention target, as the SemDeDup paper reports its runs
  (keep 50%, 80%, ...): each member's highest similarity to a member before it in that order is its
  "earlier max" M; the keep_fraction quantile of M over the whole dataset is the threshold. The
  paper drops every member whose M exceeds it, so exactly that share goes; the walk above drops
  only copies of *kept* members, so it keeps at least keep_fraction.
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


def _ranked(keys: list[str], scores: list[float]) -> list[int]:
    return sorted(range(len(keys)), key=lambda i: (-scores[i], keys[i]))


def earlier_max_similarity(keys: list[str], scores: list[float], embeddings: np.ndarray) -> np.ndarray:
    """For each member (input order): its highest cosine similarity to a member ranked before it
    (SemDeDup's M); -1 for the cluster's first member, which nothing precedes."""
    n = len(keys)
    order = _ranked(keys, scores)
    x = normalised(embeddings[order])
    best = np.full(n, -1.0, np.float32)
    for start in range(0, n, _BLOCK):
        stop = min(n, start + _BLOCK)
        sims = x[start:stop] @ x[:stop].T  # this block against everything up to its end
        for i in range(start, stop):
            if i:
                best[i] = sims[i - start, :i].max()
    result = np.empty(n, np.float32)
    result[order] = best
    return result


def epsilon_for_retention(quantiles: list[float], keep_fraction: float) -> float:
    """Epsilon from evenly spaced quantiles of M over the dataset (min .. max): drop cos >= the
    keep_fraction quantile. Clamped to (0, 1): with every M at 1.0 only exact copies go."""
    if not quantiles:
        return 1.0 - 1e-6
    position = keep_fraction * (len(quantiles) - 1)
    low = int(np.floor(position))
    high = min(low + 1, len(quantiles) - 1)
    threshold = quantiles[low] + (quantiles[high] - quantiles[low]) * (position - low)
    return float(min(max(1.0 - threshold, 1e-6), 1.0 - 1e-6))


def dedup_cluster(keys: list[str], scores: list[float], embeddings: np.ndarray,
                  epsilon: float) -> list[int | None]:
    """For each member (input order): None if kept, else the index of the kept member it duplicates."""
    n = len(keys)
    order = _ranked(keys, scores)
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
