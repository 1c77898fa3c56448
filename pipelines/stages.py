"""The recipe's stage names -> their Beam PTransform and a preflight check run in the driver.

The preflight loads what the stage needs (models, files) once before the pipeline starts, so a
missing model fails in seconds with a clear message instead of inside a worker, and it reports
the models' identities for the manifest. Adding a stage: a filters/ module, a PTransform, an entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import apache_beam as beam

from filters.heuristics import HeuristicFilter
from manifests.recipe import StageEntry
from pipelines import clipscore_stage, metaclip_stage, semantic_dedup_stage, tmars_stage
from pipelines.heuristics_stage import HeuristicsStage

@dataclass(frozen=True)
class StageContext:
    seed: int  # the recipe's: every random choice derives from (sample key, seed)
    root: str  # the run directory, for stages that write reports


# name -> (PTransform factory taking (stage config, context), preflight returning model identities)
_REGISTRY: dict[str, tuple[Callable[[Any, StageContext], beam.PTransform], Callable[[Any], list[dict[str, Any]]]]] = {
    "heuristics": (lambda config, ctx: HeuristicsStage(config), lambda config: HeuristicFilter(config).models()),
    "clipscore": (lambda config, ctx: clipscore_stage.ClipScoreStage(config), clipscore_stage.preflight),
    "tmars": (lambda config, ctx: tmars_stage.TmarsStage(config), tmars_stage.preflight),
    "semantic_dedup": (lambda config, ctx: semantic_dedup_stage.SemanticDedupStage(config, ctx.seed),
                       semantic_dedup_stage.preflight),
    "metaclip": (lambda config, ctx: metaclip_stage.MetaclipStage(config, ctx.seed, ctx.root), metaclip_stage.preflight),
}


def stage_transform(entry: StageEntry, context: StageContext) -> beam.PTransform:
    return _REGISTRY[entry.name][0](entry.config, context)


def preflight(entry: StageEntry) -> list[dict[str, Any]]:
    return _REGISTRY[entry.name][1](entry.config)
