"""`vlcurate experiment mini-datacomp` end to end at the tiny scale: every step runs (pool, filtering
CLIP, six curations, training and held-out evaluation per recipe), results.json has the names outside
checks read, and the filter table is computed from the pool's truth. Learning is not asserted here:
the tiny scale trains for a few steps; the default scale's figures are a benchmark (README)."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from manifests.manifest import read_manifest
from pipelines.experiment.run import concept_scores
from tests.test_cli import vlcurate


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    out = tmp_path_factory.mktemp("mini") / "exp"
    result = vlcurate("experiment", "mini-datacomp", str(out), "--scale", "tiny", "--seeds", "1", "--quiet",
                      "--recipes", "raw,tmars")  # the "two recipes": tmars runs heuristics + clipscore too
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


def test_results_json_has_every_recipe_metric_and_filter(experiment):
    out, result = experiment
    results = json.loads((out / "results.json").read_text())
    assert list(results["recipes"]) == ["raw", "tmars"]
    for name, recipe in results["recipes"].items():
        manifest = read_manifest(out / "runs" / name)
        assert recipe["samples_kept"] == manifest.counts.kept > 0
        for metric in ("val_loss", "cider_d", "concept_accuracy"):
            assert len(recipe["metrics"][metric]) == 1  # one value per seed
    assert results["recipes"]["raw"]["samples_kept"] > results["recipes"]["tmars"]["samples_kept"]
    truth = pq.read_table(out / "pool" / "truth.parquet").to_pylist()
    noises = {row["noise"] for row in truth}
    assert {"heuristics", "clipscore", "tmars"} <= set(results["filters"]) <= {"read", "heuristics", "clipscore", "tmars", "sink"}
    for stage, by_noise in results["filters"].items():
        assert set(by_noise) == noises
        assert all(0.0 <= v["precision"] <= 1.0 and 0.0 <= v["recall"] <= 1.0 for v in by_noise.values())
        removed = sum(v["removed"] for v in by_noise.values())
        assert removed == sum(f.rejected for f in read_manifest(out / "runs" / "tmars").funnel if f.stage == stage)
    # recall is of what reached the stage: the pool less what the stages before it removed
    order = list(results["filters"])
    for before, after in zip(order, order[1:]):
        for noise in noises:
            b, a = results["filters"][before][noise], results["filters"][after][noise]
            assert a["reached"] == b["reached"] - b["removed"]
            assert a["recall"] == (round(a["removed"] / a["reached"], 4) if a["reached"] else 0.0)
    page = (out / "index.html").read_text()
    assert "The filtering CLIP" in page and "zero_shot" in page
    broken = results["filters"]["heuristics"]["broken_image"]
    assert broken["recall"] == 1.0  # what the reader lets through, the basic filter's decode check catches
    assert "zero_shot" in results["filter_clip"] and (out / "index.html").exists()
    assert "tmars" in result.stdout and "results:" in result.stdout
    assert "INFO vlcurate" not in result.stderr  # --quiet: warnings and errors only
    assert "the step waited for data" not in result.stderr  # data.workers is the experiment's, not the user's
    # a second run into the same OUT would replace these results: refused, before anything is written
    again = vlcurate("experiment", "mini-datacomp", str(out), "--scale", "tiny", "--seeds", "1", "-q")
    assert again.returncode == 2 and "is not empty (an earlier experiment?); pass --overwrite" in again.stderr


def test_concept_accuracy_reads_colour_shape_and_count():
    rows = [{"generated": "two small red circles on a blue background",
             "references": ["two large red circles on a striped blue background"]},
            {"generated": "a red circle", "references": ["three small red circles on a white background"]},
            {"generated": "nothing at all", "references": ["a large blue square on a red background"]}]
    scores = concept_scores(rows)
    assert scores["concept_accuracy"] == pytest.approx(1 / 3)
    assert scores["colour_accuracy"] == pytest.approx(2 / 3) and scores["count_accuracy"] == pytest.approx(1 / 3)


def test_dedup_removals_are_classified_against_the_planted_pairs():
    from pipelines.experiment.results import classify_dedup_removals

    truth = [{"key": "a", "colour": "red", "shape": "circle", "duplicate_of": None},
             {"key": "a2", "colour": "red", "shape": "circle", "duplicate_of": "a"},
             {"key": "a3", "colour": "red", "shape": "circle", "duplicate_of": "a"},
             {"key": "b", "colour": "red", "shape": "circle", "duplicate_of": None},
             {"key": "c", "colour": "blue", "shape": "star", "duplicate_of": None}]

    def removal(key, survivor):
        return {"key": key, "stage": "semantic_dedup", "reason": "near_duplicate", "detail": f"{survivor} (cos 0.99)"}

    rows = [removal("a2", "a"),  # the copy goes, its original stays
            removal("a", "a3"),  # the original goes, a copy stays: as right
            removal("a3", "a2"),  # two copies of one original
            removal("b", "a"),  # another scene of the same concept
            removal("c", "a"),  # anything else
            {"key": "c", "stage": "clipscore", "reason": "low_score", "detail": ""}]
    assert classify_dedup_removals(rows, truth) == {"removed": 5, "true_pair": 3, "same_concept": 1, "other": 1}
