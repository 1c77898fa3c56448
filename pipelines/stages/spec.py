"""A stage as one declared unit.

A StageSpec says everything the rest of vlcurate needs to know about a stage: the name recipes use,
its config model, the record kinds it accepts and produces, the annotations it requires from
earlier stages and provides to later ones, a driver-side preflight, and how to build its Beam
transform. The registry (pipelines/stages/__init__.py) finds every module of this package that
defines `SPEC`; the recipe is assembled from the registry (manifests/recipe.py) and the curate
driver builds the graph from it. Nothing else knows stage names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from filters.records import SAMPLE


@dataclass(frozen=True)
class StageContext:
    seed: int  # the recipe's: every random choice derives from (record key, seed)
    root: str  # the run directory, for stages that write reports
    allow_private_networks: bool = False  # `curate --allow-private-networks`: stages that fetch may reach them


@dataclass
class Preflight:
    """What the driver learnt before the run: model identities for the manifest, and the checks it
    left to the workers (e.g. loading a model onto a GPU the driver does not have)."""

    models: list[dict[str, Any]] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Cutoff:
    """A threshold a stage applies to one of its scores: the report draws it on the score's histogram."""

    annotation: str  # the score, as the stage records it (e.g. clip_score)
    value: float | None  # None: set by the data at run time (top_fraction); the report finds it
    keep: str  # "above": records scoring below `value` are dropped; "below": those above it
    setting: str  # the recipe key that sets it, e.g. "image.min_side"


def _nothing(_config: Any) -> Preflight:
    return Preflight()


@dataclass(frozen=True)
class StageSpec:
    name: str  # the key in a recipe's `stages:` list, and the stage column of the rejection table
    summary: str  # one line for `vlcurate stages`
    config: type  # a manifests.schema.Strict model: the stage's settings
    build: Callable[[Any, StageContext], Any]  # (config, context) -> a PTransform returning StageOutputs
    accepts: tuple[str, ...] = (SAMPLE,)  # record kinds it takes
    produces: str = SAMPLE  # the kind its kept output holds
    requires: tuple[str, ...] = ()  # annotations an earlier stage must provide
    provides: tuple[str, ...] = ()  # annotations it adds (all it may add; see provides_for)
    uses: tuple[str, ...] = ()  # annotations it reuses when an earlier stage provides them
    reasons: tuple[str, ...] = ()  # rejection reasons it can give (besides the guard's error_*)
    edits: tuple[str, ...] = ()  # reasons of the edits it makes (parts of kept records removed)
    preflight: Callable[[Any], Preflight] = _nothing  # driver-side checks; builds no model on a device
    # (config, {used annotation: the config of the stage that provides it}) -> config; raises
    # ValueError when the combination cannot work. How tmars inherits clipscore's model.
    resolve: Callable[[Any, dict[str, Any]], Any] | None = None
    # What this config provides, when that depends on the settings (tmars without a model adds no embedding).
    provides_for: Callable[[Any], tuple[str, ...]] | None = None
    report: str | None = None  # what it writes under reports/, if anything
    # config -> run-directory prefixes an interrupted run keeps when started again (what it fetched)
    keeps_on_resume: Callable[[Any], tuple[str, ...]] | None = None
    cutoffs: Callable[[Any], list[Cutoff]] | None = None  # config -> the thresholds it applies to its scores

    def provided(self, config: Any) -> tuple[str, ...]:
        return self.provides_for(config) if self.provides_for else self.provides
