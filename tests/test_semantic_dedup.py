"""Semantic dedup: planted near-duplicates go, distinct images stay, survivors are chosen by score
then key, the result does not depend on the runner's worker count, and the target filter works."""

from __future__ import annotations

import io

import numpy as np
import pyarrow.parquet as pq
import pytest

from filters.dedup import dedup_cluster, earlier_max_similarity, epsilon_for_retention, nearest_centroid, \
    target_clusters, train_centroids
from manifests.manifest import read_manifest
from manifests.recipe import parse_recipe
from pipelines.drivers.curate import curate
from tests.model_inputs import jpeg, near_copies, scene, write_records

DISTINCT = 12


def _pool(folder):
    """12 distinct scenes, and for 4 of them a re-encoded, a resized and a cropped copy."""
    records = []
    for i in range(DISTINCT):
        img = scene(i)
        records.append((f"s{i:02d}", jpeg(img), f"scene number {i}"))
        if i % 3 == 0:
            for kind, copy in near_copies(img).items():
                records.append((f"s{i:02d}-{kind}", jpeg(copy), f"scene number {i}"))
    return write_records(folder, records)


def _run(tiny_clip, tmp_path, name: str, beam_args=None, **dedup):
    dedup = {"epsilon": 0.05, **dedup} if "keep_fraction" not in dedup else dedup
    recipe = parse_recipe({"name": "t", "seed": 5, "stages": [
        {"clipscore": {"model": tiny_clip, "batch_size": 8}},
        {"semantic_dedup": {"clusters": 3, **dedup}}]})
    out = tmp_path / name
    curate(recipe, f"{tmp_path}/in/*.tar", str(out), beam_args=beam_args)
    m = read_manifest(str(out))
    kept = sorted(k for s in m.shards for k in pq.read_table(out / s.metadata.name)["key"].to_pylist())
    rejected = {r["key"]: r for f in m.rejected for r in pq.read_table(out / f.name).to_pylist()}
    assert m.counts.input == len(kept) + len(rejected) == m.counts.kept + m.counts.rejected
    return kept, rejected


@pytest.fixture(scope="module")
def pooled(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dedup")
    _pool(folder / "in")
    return folder


def test_planted_near_duplicates_are_removed_and_distinct_images_kept(tiny_clip, pooled):
    kept, rejected = _run(tiny_clip, pooled, "memory")
    groups = {k.split("-")[0] for k in kept}
    assert len(kept) == DISTINCT and groups == {f"s{i:02d}" for i in range(DISTINCT)}, kept
    assert len(rejected) == 12 and {r["reason"] for r in rejected.values()} == {"near_duplicate"}
    for key, row in rejected.items():
        survivor = row["detail"].split()[0]
        assert survivor.split("-")[0] == key.split("-")[0] and survivor in kept


def test_keep_fraction_chooses_epsilon_from_the_data(tiny_clip, pooled):
    """Half the pool are planted copies: asked to keep half, the stage finds an epsilon that removes
    exactly the copies, without being told one."""
    kept, rejected = _run(tiny_clip, pooled, "retention", keep_fraction=0.5)
    assert len(kept) == DISTINCT and {k.split("-")[0] for k in kept} == {f"s{i:02d}" for i in range(DISTINCT)}
    details = [r["detail"] for r in rejected.values()]
    assert len(details) == 12 and all("for keep_fraction 0.5" in d for d in details), details[:2]
    assert len({d.split("; ")[1] for d in details}) == 1  # one epsilon for the whole dataset


def test_keep_fraction_and_epsilon_are_exclusive():
    from manifests.recipe import RecipeError

    with pytest.raises(RecipeError, match="epsilon or keep_fraction"):
        parse_recipe({"name": "t", "stages": [{"clipscore": {"model": {"name": "ViT-B-32"}}},
                                              {"semantic_dedup": {"epsilon": 0.1, "keep_fraction": 0.8}}]})


def test_retention_threshold_keeps_at_least_the_fraction_asked():
    """The walk drops only copies of kept members, so it keeps at least what SemDeDup's rule (drop
    every M above the threshold) keeps, which is the fraction asked."""
    rng = np.random.default_rng(2)
    base = rng.standard_normal((40, 24))
    x = np.concatenate([base, base[:30] + 0.05 * rng.standard_normal((30, 24)),
                        base[:10] + 0.2 * rng.standard_normal((10, 24))])
    keys = [f"k{i:03d}" for i in range(len(x))]
    scores = rng.random(len(x)).tolist()
    m = earlier_max_similarity(keys, scores, x)
    assert (m == -1).sum() == 1 and m.max() <= 1.0 + 1e-6
    for keep in (0.5, 0.7, 0.9):
        epsilon = epsilon_for_retention(np.quantile(m, np.linspace(0, 1, 1001)).tolist(), keep)
        paper_rule_kept = (m < 1 - epsilon).mean()
        walk_kept = sum(s is None for s in dedup_cluster(keys, scores, x, epsilon)) / len(x)
        assert abs(paper_rule_kept - keep) <= 1 / len(x) and walk_kept >= paper_rule_kept - 1e-9


def test_result_does_not_depend_on_worker_count(tiny_clip, pooled):
    in_memory = _run(tiny_clip, pooled, "memory2")
    multi = _run(tiny_clip, pooled, "multi", beam_args=["--direct_running_mode=multi_processing",
                                                        "--direct_num_workers=2"])
    assert in_memory[0] == multi[0]
    assert {k: r["detail"] for k, r in in_memory[1].items()} == {k: r["detail"] for k, r in multi[1].items()}


def test_target_filter_keeps_only_clusters_of_the_targets(tiny_clip, pooled):
    import open_clip
    import torch
    from PIL import Image

    # Targets: the embeddings of two of the scenes, computed directly with the same model.
    model, _, preprocess = open_clip.create_model_and_transforms(tiny_clip["name"], pretrained=tiny_clip["pretrained"])
    with torch.no_grad():
        targets = model.encode_image(torch.stack([preprocess(Image.open(io.BytesIO(jpeg(scene(i)))))
                                                  for i in (1, 2)]), normalize=True).numpy()
    np.save(pooled / "targets.npy", targets)
    kept, rejected = _run(tiny_clip, pooled, "target", epsilon=None, target_embeddings=str(pooled / "targets.npy"))
    assert {"s01", "s02"} <= set(kept)
    assert len(kept) + len(rejected) == 24 and len(rejected) > 0  # 3 clusters, targets in at most 2
    assert {r["reason"] for r in rejected.values()} == {"not_near_target"}


def test_survivor_is_highest_score_then_smallest_key():
    rng = np.random.default_rng(0)
    base = rng.standard_normal(16)
    embeddings = np.stack([base, base + 0.001, base, rng.standard_normal(16), base * 2])
    keys = ["b", "a", "c", "d", "e"]
    scores = [0.2, 0.2, 0.3, 0.1, 0.2]
    # c has the best score; a/b/e are its copies; d is distinct.
    assert dedup_cluster(keys, scores, embeddings, 0.01) == [2, 2, None, None, 2]
    scores = [0.2, 0.2, 0.1, 0.1, 0.2]  # tie at 0.2: smallest key "a" survives
    assert dedup_cluster(keys, scores, embeddings, 0.01) == [1, None, 1, None, 1]


def test_kmeans_is_deterministic_and_targets_map_to_clusters():
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((4, 32)) * 5
    points = np.concatenate([c + rng.standard_normal((50, 32)) for c in centres])
    a, b = train_centroids(points, 4, 20, seed=3), train_centroids(points, 4, 20, seed=3)
    assert np.array_equal(a, b)
    labels = nearest_centroid(points, a)
    assert all(len(set(labels[i * 50:(i + 1) * 50])) == 1 for i in range(4))
    assert target_clusters(centres[:1], a) == {int(labels[0])}
    assert train_centroids(points[:3], 10, 5, seed=0).shape == (3, 32)  # k shrinks to the sample


def test_an_embedding_of_another_length_is_rejected_not_fatal(tmp_path, caplog):
    """One sample whose embedding has another length (another model, a bug) is rejected; k-means
    trains on the common length and the rest are deduplicated as usual."""
    import apache_beam as beam
    import numpy as np
    from apache_beam.options.pipeline_options import PipelineOptions

    from filters.sample import Sample
    from pipelines.stages.semantic_dedup import SemanticDedupConfig, SemanticDedupStage

    rng = np.random.default_rng(0)
    samples = []
    for i in range(12):
        s = Sample(f"k{i:02d}", "in.tar", b"x", "jpg", "a caption")
        vector = rng.normal(size=4 if i == 5 else 8)
        s.set_vector("clip_image_embedding", vector / np.linalg.norm(vector))
        s.annotations["clip_score"] = 0.3
        samples.append(s)
    with beam.Pipeline(options=PipelineOptions(["--runner=DirectRunner"])) as p:
        outputs = (p | beam.Create(samples).with_output_types(Sample)
                   | SemanticDedupStage(SemanticDedupConfig(clusters=2, epsilon=0.01), seed=0))
        _ = outputs.rejected | "R" >> beam.Map(lambda r: (tmp_path / f"rej-{r.key}").write_text(r.reason + "|" + r.detail))
        _ = outputs.kept | "K" >> beam.Map(lambda s: (tmp_path / f"kept-{s.key}").write_text("1"))
    assert (tmp_path / "rej-k05").read_text() == "embedding_missing|clip_image_embedding has 4 values, the centroids 8"
    assert len(list(tmp_path.glob("kept-*"))) == 11
    # 11 samples for 2 clusters: few enough a cluster that pairs split apart go unseen; the run says so.
    assert "semantic_dedup: 11 samples for 2 clusters (5.5 a cluster)" in caplog.text


def test_repeated_keys_and_non_finite_embeddings_get_one_decision_each(tmp_path):
    """One file repeating a key (with another image, or the same) used to give two decisions to
    each copy, and every copy was rejected as an error; a NaN embedding could fail k-means."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from filters.sample import Sample
    from pipelines.stages.semantic_dedup import SemanticDedupConfig, SemanticDedupStage

    rng = np.random.default_rng(1)
    vectors = [v / np.linalg.norm(v) for v in rng.normal(size=(6, 8))]
    rows = [("a", vectors[0]), ("b", vectors[1]), ("c", vectors[2]), ("rep", vectors[3]), ("rep", vectors[4]),
            ("same", vectors[5]), ("same", vectors[5]), ("nan", np.full(8, np.nan))]
    samples = []
    for key, vector in rows:
        s = Sample(key, "in.tar", b"x", "jpg", "a caption")
        s.set_vector("clip_image_embedding", vector)
        s.annotations["clip_score"] = 0.3
        samples.append(s)
    with beam.Pipeline(options=PipelineOptions(["--runner=DirectRunner"])) as p:
        outputs = (p | beam.Create(samples).with_output_types(Sample)
                   | SemanticDedupStage(SemanticDedupConfig(clusters=2, epsilon=0.01), seed=0))
        _ = (outputs.kept | "K" >> beam.Map(lambda s: f"kept {s.key}")
             | "J" >> beam.combiners.ToList()
             | "W" >> beam.Map(lambda xs: (tmp_path / "kept.txt").write_text("\n".join(sorted(xs)))))
        _ = (outputs.rejected | "R" >> beam.Map(lambda r: f"{r.reason} {r.key}")
             | "L" >> beam.combiners.ToList()
             | "V" >> beam.Map(lambda xs: (tmp_path / "rejected.txt").write_text("\n".join(sorted(xs)))))
    kept = (tmp_path / "kept.txt").read_text().split("\n")
    rejected = (tmp_path / "rejected.txt").read_text().split("\n")
    # both copies of `rep` (two images) are kept for the sink to choose; of `same`, one survives
    assert kept == ["kept a", "kept b", "kept c", "kept rep", "kept rep", "kept same"]
    assert rejected == ["embedding_not_finite nan", "near_duplicate same"]


@pytest.mark.parametrize("dedup", [{"epsilon": 0.05}, {"keep_fraction": 0.5}])
def test_a_stage_that_receives_nothing_finishes(dedup):
    """Everything rejected upstream: k-means has nothing to train on, and the run still completes."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.testing.util import assert_that, equal_to

    from filters.sample import Sample
    from pipelines.stages.semantic_dedup import SemanticDedupConfig, SemanticDedupStage

    with beam.Pipeline(options=PipelineOptions(["--runner=DirectRunner"])) as p:
        outputs = (p | beam.Create([]).with_output_types(Sample)
                   | SemanticDedupStage(SemanticDedupConfig(clusters=2, **dedup), seed=0))
        counted = ((outputs.kept, outputs.rejected) | beam.Flatten() | beam.combiners.Count.Globally())
        assert_that(counted, equal_to([0]))


def test_a_target_file_that_is_no_embedding_matrix_is_refused_before_the_run(tmp_path):
    """It failed after every record had been scored (35-52 s), with a Beam traceback."""
    from pipelines.stages.semantic_dedup import SemanticDedupConfig, preflight

    np.save(tmp_path / "flat.npy", np.zeros(8, dtype=np.float32))
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "text.npy").write_text("not numpy")
    np.save(tmp_path / "good.npy", np.ones((3, 8), dtype=np.float16))
    for name, problem in [("flat", r"shape \(8,\); expected \(n, embedding width\)"), ("objects", "Python objects"),
                          ("text", "is not a .npy array")]:
        with pytest.raises(ValueError, match=problem):
            preflight(SemanticDedupConfig(target_embeddings=str(tmp_path / f"{name}.npy")))
    assert preflight(SemanticDedupConfig(target_embeddings=str(tmp_path / "good.npy"))).models
