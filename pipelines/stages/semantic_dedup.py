"""Semantic dedup on Beam: k-means on a keyed sample -> centroids side input -> assign -> group by cluster.

Only light records (id, key, score, float16 embedding) are grouped by cluster, never the images,
so a large cluster costs a worker its embeddings only. Each sample's decision (cluster, and a reason
if dropped) is joined back to the sample by its id. The k-means training sample is the
`train_samples` smallest key hashes: the same keys on every runner and worker count.
With `keep_fraction`, epsilon is chosen from the data (filters/dedup.py): every cluster's members'
"earlier max" similarities go through Beam's ApproximateQuantiles, and the chosen epsilon reaches
the dedup step as a side input (it is logged, and written into every near_duplicate's detail).
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter

import apache_beam as beam
import numpy as np
from apache_beam.transforms.stats import ApproximateQuantiles
from pydantic import Field, model_validator

from filters.clipscore import IMAGE_VECTOR, SCORE
from filters.dedup import CLUSTER, STAGE, dedup_cluster, earlier_max_similarity, epsilon_for_retention, \
    nearest_centroid, normalised, target_clusters, train_centroids
from filters.keyed_random import key_hash
from filters.sample import Rejection, Sample
from manifests.recipe_paths import RecipePath
from manifests.schema import Strict
from pipelines.beam.join import join_with_values, paired, unpack
from pipelines.beam.routing import KeyedSample, StageOutputs, all_rejections, split
from pipelines.stages.spec import Preflight, StageSpec

log = logging.getLogger("vlcurate")
FEW_PER_CLUSTER = 20  # below this many samples a cluster on average, the run gets a warning
LARGE_CLUSTER = 20_000  # above this many in one cluster, too (30k members took 10 s and 450 MB)

_ASSIGN_BATCH = 1024
_QUANTILES = 1001  # M's quantiles at every 0.1%: keep_fraction lands within 0.1% of its target
# What travels instead of the samples: (cluster, (id, key, score, float16 embedding)), and decisions
# (id, (cluster, reason or None, detail)).
_LIGHT = beam.typehints.Tuple[int, beam.typehints.Tuple[str, str, float, bytes]]
_DECISION = beam.typehints.Tuple[str, beam.typehints.Tuple[int, beam.typehints.Optional[str], str]]


class SemanticDedupConfig(Strict):
    """SemDeDup on the CLIP image embeddings of an earlier clipscore/tmars stage, plus DataComp's image filter."""

    clusters: int = Field(100, ge=1, description="k-means centroids (fewer when the sample is smaller)")
    train_samples: int = Field(50_000, ge=1, description="embeddings sampled (by key hash) to train k-means")
    iterations: int = Field(20, ge=1)
    epsilon: float | None = Field(0.05, gt=0.0, lt=1.0, description="drop cos sim >= 1 - epsilon; null: no dedup")
    keep_fraction: float | None = Field(None, gt=0.0, lt=1.0, description=(
        "instead of epsilon: choose it so that about this share is kept (at least this share), as the "
        "SemDeDup paper sets its runs by retention"))
    target_embeddings: RecipePath | None = Field(None, description=".npy of target embeddings: keep samples in "
                                                 "their clusters")

    @model_validator(mode="after")
    def _one_threshold(self):
        if self.keep_fraction is not None and "epsilon" in self.model_fields_set:
            raise ValueError("set epsilon or keep_fraction, not both (keep_fraction chooses epsilon)")
        return self


def _id(sample: Sample) -> str:
    # Keys are unique per dataset only in intent; the source file and the embedding tell repeated
    # keys apart here (the sink later keeps one copy per key and rejects the rest as duplicate_key).
    vector = sample.vectors.get(IMAGE_VECTOR, b"")
    return f"{sample.key}\x00{sample.source}\x00{hashlib.blake2b(vector, digest_size=8).hexdigest()}"


def _with_embedding(sample: Sample):
    vector = sample.get_vector(IMAGE_VECTOR)
    if vector is None:
        return Rejection.of(sample, STAGE, "embedding_missing", f"no {IMAGE_VECTOR}; run clipscore before semantic_dedup")
    if not np.isfinite(vector).all():  # one NaN in k-means' sample would fail faiss, and the run
        return Rejection.of(sample, STAGE, "embedding_not_finite", f"{IMAGE_VECTOR} holds NaN or inf")
    return sample


def _train(rows: list[tuple[int, str, bytes]], config: SemanticDedupConfig, seed: int) -> np.ndarray | None:
    if not rows:  # nothing reached this stage (all rejected upstream): nothing to cluster, nothing to assign
        return None
    # One embedding length trains the centroids (the most common); samples of another length are
    # rejected at assignment, not allowed to break k-means.
    lengths = Counter(len(b) for _, _, b in rows)
    common = max(lengths, key=lambda n: (lengths[n], -n)) if lengths else 0
    rows = sorted(r for r in rows if len(r[2]) == common)
    embeddings = np.stack([np.frombuffer(b, "<f2") for _, _, b in rows]).astype(np.float32)
    # rows is the whole pool only when it is smaller than the k-means sample
    if len(rows) < min(FEW_PER_CLUSTER * config.clusters, config.train_samples):
        # Pairs are compared only inside a cluster: with a handful of samples each, most near-duplicates
        # land in different clusters and are never compared (87 samples, 100 clusters: none removed).
        log.warning("semantic_dedup: %d samples for %d clusters (%.1f a cluster): near-duplicates in different "
                    "clusters are never compared; clusters: %d would give ~%d a cluster", len(rows), config.clusters,
                    len(rows) / config.clusters, max(1, len(rows) // 100), min(len(rows), 100))
    return train_centroids(embeddings, config.clusters, config.iterations, seed)


def _load_targets(path: str, centroids: np.ndarray) -> list[int]:
    import fsspec

    with fsspec.open(path, "rb") as f:
        targets = np.load(f, allow_pickle=False)  # a data file, never code
    if targets.ndim != 2 or targets.shape[1] != centroids.shape[1]:
        raise ValueError(f"target embeddings {path} have shape {targets.shape}; expected (n, {centroids.shape[1]})")
    return sorted(target_clusters(targets, centroids))


class _AssignFn(beam.DoFn):
    """Batch of Samples -> (cluster, light record) or a final decision for samples off-target."""

    def process(self, batch: list[Sample], centroids: np.ndarray, targets: list[int] | None):
        dim = centroids.shape[1]
        for sample in [s for s in batch if len(s.vectors[IMAGE_VECTOR]) != 2 * dim]:
            yield beam.pvalue.TaggedOutput("decided", (_id(sample), (-1, "embedding_missing", (
                f"{IMAGE_VECTOR} has {len(sample.vectors[IMAGE_VECTOR]) // 2} values, the centroids {dim}"))))
        batch = [s for s in batch if len(s.vectors[IMAGE_VECTOR]) == 2 * dim]
        if not batch:
            return
        embeddings = np.stack([s.get_vector(IMAGE_VECTOR) for s in batch])
        clusters = nearest_centroid(embeddings, centroids)
        allowed = set(targets) if targets is not None else None
        for sample, cluster in zip(batch, clusters):
            cluster = int(cluster)
            if allowed is not None and cluster not in allowed:
                yield beam.pvalue.TaggedOutput("decided", (_id(sample), (cluster, "not_near_target",
                                                                       "nearest centroid holds no target embedding")))
                continue
            yield cluster, (_id(sample), sample.key, float(sample.annotations.get(SCORE, 0.0)),
                            sample.vectors[IMAGE_VECTOR])


def _earlier_max(item):
    _cluster, members = item
    members = sorted(members)
    embeddings = np.stack([np.frombuffer(m[3], "<f2") for m in members]).astype(np.float32)
    yield from earlier_max_similarity([m[1] for m in members], [m[2] for m in members], embeddings).tolist()


def _chosen_epsilon(quantiles: list[float], keep_fraction: float) -> float:
    epsilon = epsilon_for_retention(quantiles, keep_fraction)
    log.info("semantic_dedup: keep_fraction %.3f -> epsilon %.4f (drop cos >= %.4f)", keep_fraction, epsilon,
             1 - epsilon)
    return epsilon


def _dedup(item, epsilon: float | None, keep_fraction: float | None = None):
    cluster, members = item
    members = sorted(members)
    if len(members) > LARGE_CLUSTER and epsilon is not None:
        log.warning("semantic_dedup: cluster %d holds %d samples; comparing within a cluster grows with the "
                    "square of its size: raise clusters so that each holds a few thousand", cluster, len(members))
    chosen = f"; epsilon {epsilon:.4f} for keep_fraction {keep_fraction:g}" if keep_fraction is not None else ""
    if epsilon is None:
        for sample_id, *_ in members:
            yield sample_id, (cluster, None, "")
        return
    embeddings = normalised(np.stack([np.frombuffer(m[3], "<f2") for m in members]).astype(np.float32))
    survivors = dedup_cluster([m[1] for m in members], [m[2] for m in members], embeddings, epsilon)
    for i, (member, survivor) in enumerate(zip(members, survivors)):
        sample_id = member[0]
        if survivor is None:
            yield sample_id, (cluster, None, "")
        else:
            similarity = float(embeddings[i] @ embeddings[survivor])
            yield sample_id, (cluster, "near_duplicate", f"{members[survivor][1]} (cos {similarity:.4f}{chosen})")


def _apply(item):
    _sample_id, group = item
    # Copies of one key in one file with one embedding share an id: one survives, the rest are its
    # near-duplicates.
    for sample, (cluster, reason, detail) in paired(*unpack(group), _kept_first):
        if reason is None:
            sample.annotations[CLUSTER] = cluster
            yield sample
        else:
            yield Rejection.of(sample, STAGE, reason, detail)


def _kept_first(decision) -> tuple:
    cluster, reason, detail = decision
    return reason is not None, reason or "", detail, cluster


class SemanticDedupStage(beam.PTransform):
    def __init__(self, config: SemanticDedupConfig, seed: int = 0):
        super().__init__()
        self.config, self.seed = config, seed

    def expand(self, samples):
        c, seed = self.config, self.seed
        usable = split(samples, "HasEmbedding", _with_embedding, stage=STAGE)
        centroids = (
            usable.kept
            # The hash shifted into int64's range (same order) so Beam's VarIntCoder can carry it.
            | "TrainKey" >> beam.Map(lambda s: (key_hash(s.key, seed, "kmeans-sample") - (1 << 63), s.key,
                                                s.vectors[IMAGE_VECTOR]))
            .with_output_types(beam.typehints.Tuple[int, str, bytes])
            | "TrainSample" >> beam.combiners.Top.Smallest(c.train_samples)
            | "KMeans" >> beam.Map(_train, config=c, seed=seed)
        )
        targets = beam.pvalue.AsSingleton(
            samples.pipeline | "TargetPath" >> beam.Create([c.target_embeddings])
            | "TargetClusters" >> beam.Map(lambda path, cents: None if path is None or cents is None
                                           else _load_targets(path, cents),
                                           cents=beam.pvalue.AsSingleton(centroids)))
        assigned = (
            usable.kept
            | "Batch" >> beam.BatchElements(min_batch_size=_ASSIGN_BATCH, max_batch_size=_ASSIGN_BATCH)
            .with_output_types(beam.typehints.List[Sample])
            | "Assign" >> beam.ParDo(_AssignFn(), beam.pvalue.AsSingleton(centroids), targets)
            .with_output_types(_LIGHT, decided=_DECISION)
            .with_outputs("decided", main="light")
        )
        grouped = assigned.light | "ByCluster" >> beam.GroupByKey()
        epsilon = c.epsilon
        if c.keep_fraction is not None:
            epsilon = beam.pvalue.AsSingleton(
                grouped
                | "EarlierMax" >> beam.FlatMap(_earlier_max).with_output_types(float)
                | "Quantiles" >> ApproximateQuantiles.Globally(_QUANTILES)
                | "Epsilon" >> beam.Map(_chosen_epsilon, keep_fraction=c.keep_fraction))
        deduped = grouped | "Dedup" >> beam.FlatMap(_dedup, epsilon=epsilon, keep_fraction=c.keep_fraction)
        decisions = (assigned.decided, deduped) | "AllDecisions" >> beam.Flatten()
        by_id = usable.kept | "ById" >> beam.Map(lambda s: (_id(s), s)).with_output_types(KeyedSample)
        joined = join_with_values("Join", by_id, decisions)
        applied = split(joined, "Apply", _apply, stage=STAGE)
        return StageOutputs(applied.kept, all_rejections("AllRejected", usable.rejected, applied.rejected))


def _targets_problem(f) -> str | None:
    """Why an .npy header cannot be a matrix of embeddings (its width is checked against the model's
    when the centroids are known), or None."""
    try:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(f)
    except Exception as err:  # not an .npy file
        return f"is not a .npy array ({type(err).__name__}: {str(err)[:120]})"
    if dtype.hasobject:
        return "holds Python objects (loading it would unpickle them): save a float array"
    if dtype.kind not in "fiu" or len(shape) != 2 or not shape[0]:
        return f"holds a {dtype} array of shape {shape}; expected (n, embedding width) numbers, n >= 1"
    return None


def preflight(config: SemanticDedupConfig) -> Preflight:
    import fsspec

    import faiss

    if config.target_embeddings is not None:
        fs, path = fsspec.core.url_to_fs(config.target_embeddings)
        if not fs.isfile(path):
            raise FileNotFoundError(f"semantic_dedup.target_embeddings {config.target_embeddings!r} does not exist")
        with fs.open(path, "rb") as f:  # the header only: a wrong file failed after every record was scored
            problem = _targets_problem(f)
        if problem:
            raise ValueError(f"semantic_dedup.target_embeddings {config.target_embeddings!r} {problem}")
    return Preflight(models=[{"stage": STAGE, "name": "faiss-kmeans", "version": faiss.__version__}])


SPEC = StageSpec(
    name=STAGE,
    summary="SemDeDup: faiss k-means on CLIP image embeddings, drop near-duplicates per cluster; "
            "optional DataComp image-based target filter",
    config=SemanticDedupConfig,
    build=lambda config, context: SemanticDedupStage(config, context.seed),
    requires=(IMAGE_VECTOR,),
    provides=(CLUSTER,),
    reasons=("embedding_missing", "embedding_not_finite", "near_duplicate", "not_near_target"),
    preflight=preflight,
)
