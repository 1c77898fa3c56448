"""The recipe's stage names -> their Beam PTransform and a preflight check run in the driver.

The preflight loads what the stage needs (models, files) once before the pipeline starts, so a
missing model fails in seconds with a clear message instead of inside a worker, and it reports
the models' identities for the manifest. Adding a stage: a filters/ module, a PTransform, an entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import apache_beam as beam

from filters.heuristics import HeuristicFilter
from manifests.recipe import StageEntry
from pipelines import clipscore_stage, semantic_dedup_stage, tmars_stage
from pipelines.heuristics_stage import HeuristicsStage

# name -> (PTransform factory taking (stage config, recipe seed), preflight returning model identities)
_REGISTRY: dict[str, tuple[Callable[[Any, int], beam.PTransform], Callable[[Any], list[dict[str, Any]]]]] = {
    "heuristics": (lambda config, seed: HeuristicsStage(config), lambda config: HeuristicFilter(config).models()),
    "clipscore": (lambda config, seed: clipscore_stage.ClipScoreStage(config), clipscore_stage.preflight),
    "tmars": (lambda config, seed: tmars_stage.TmarsStage(config), tmars_stage.preflight),
    "semantic_dedup": (semantic_dedup_stage.SemanticDedupStage, semantic_dedup_stage.preflight),
}


def stage_transform(entry: StageEntry, seed: int) -> beam.PTransform:
    return _REGISTRY[entry.name][0](entry.config, seed)


def preflight(entry: StageEntry) -> list[dict[str, Any]]:
    return _REGISTRY[entry.name][1](entry.config)
