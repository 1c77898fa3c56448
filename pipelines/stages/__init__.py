"""The stage registry: every module in this package that defines `SPEC` (a StageSpec) is a stage.

Adding a stage is adding a module here (plus its pure logic in filters/ and a test); nothing
central lists stage names. Modules without SPEC (spec.py, helpers) are skipped.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache

from pipelines.stages.spec import StageSpec


@lru_cache(maxsize=1)
def registry() -> dict[str, StageSpec]:
    found: dict[str, StageSpec] = {}
    for module in pkgutil.iter_modules(__path__):
        if module.name.startswith("_"):
            continue
        spec = getattr(importlib.import_module(f"{__name__}.{module.name}"), "SPEC", None)
        if spec is None:
            continue
        if not isinstance(spec, StageSpec):
            raise TypeError(f"{__name__}.{module.name}.SPEC is not a StageSpec")
        if spec.name in found:
            raise ValueError(f"two stages are named {spec.name!r}")
        found[spec.name] = spec
    return dict(sorted(found.items()))


def get_spec(name: str) -> StageSpec:
    specs = registry()
    if name not in specs:
        raise KeyError(f"unknown stage {name!r}; known: {', '.join(specs)}")
    return specs[name]
