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
from pipelines.heuristics_stage import HeuristicsStage

# name -> (PTransform factory taking the stage config, preflight returning model identities)
_REGISTRY: dict[str, tuple[Callable[[Any], beam.PTransform], Callable[[Any], list[dict[str, Any]]]]] = {
    "heuristics": (HeuristicsStage, lambda config: HeuristicFilter(config).models()),
}


def stage_transform(entry: StageEntry) -> beam.PTransform:
    return _REGISTRY[entry.name][0](entry.config)


def preflight(entry: StageEntry) -> list[dict[str, Any]]:
    return _REGISTRY[entry.name][1](entry.config)
