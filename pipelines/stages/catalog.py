"""`vlcurate stages`: the registry described for people (text) and tools (JSON), generated from
the StageSpecs and their config models, so it cannot drift from the code."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from manifests.schema import type_name, unwrap_optional
from pipelines.stages import registry
from pipelines.stages.spec import StageSpec


def config_keys(model: type[BaseModel], prefix: str = "") -> list[dict[str, Any]]:
    """Every leaf key of a config model, nested models flattened to dotted paths."""
    keys = []
    for name, field in model.model_fields.items():
        inner = unwrap_optional(field.annotation)
        path = f"{prefix}{name}"
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            keys += config_keys(inner, f"{path}.")
            continue
        required = field.default is PydanticUndefined and field.default_factory is None
        default = None if required else (field.default_factory() if field.default_factory else field.default)
        if isinstance(default, tuple):
            default = list(default)
        keys.append({"key": path, "type": type_name(field.annotation), "required": required,
                     "default": default, "description": field.description or ""})
    return keys


def stage_record(spec: StageSpec) -> dict[str, Any]:
    return {"name": spec.name, "summary": spec.summary, "accepts": list(spec.accepts), "produces": spec.produces,
            "requires": list(spec.requires), "provides": list(spec.provides), "uses": list(spec.uses),
            "reasons": list(spec.reasons), "edits": list(spec.edits), "report": spec.report, "config": config_keys(spec.config)}


def catalog() -> list[dict[str, Any]]:
    return [stage_record(spec) for spec in registry().values()]


def catalog_text() -> str:
    lines = []
    for stage in catalog():
        lines.append(f"{stage['name']}: {stage['summary']}")
        lines.append(f"  records   {', '.join(stage['accepts'])} -> {stage['produces']}")
        for label in ("requires", "uses", "provides", "reasons", "edits"):
            if stage[label]:
                lines.append(f"  {label:<9} {', '.join(stage[label])}")
        if stage["report"]:
            lines.append(f"  report    {stage['report']}")
        lines.append("  config:")
        for key in stage["config"]:
            default = "(required)" if key["required"] else f"= {key['default']!r}"
            lines.append(f"    {key['key']:<34} {key['type']:<28} {default}")
            if key["description"]:
                lines.append(f"    {'':<34} {key['description']}")
        lines.append("")
    return "\n".join(lines)
