"""Strict configuration models and one way to validate them, shared by recipes and trainer configs.

Values are validated in pydantic's strict JSON mode: an integer field refuses "3", `yes` (YAML's
boolean) and 200.0 instead of coercing them, while YAML lists still fill tuple fields and integers
still fill float fields. Every problem is reported with its dotted key path and, for an unknown
key, the keys allowed at that place.
"""

from __future__ import annotations

import json
import types
import typing
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    """Base of every config model: unknown keys are errors and models are frozen. Files are validated
    strictly (validate_strict); Python code building a config may pass lists for tuples."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def validate_strict(model: type[M], data: Any, source: str, error: type[Exception],
                    context: dict[str, Any] | None = None) -> M:
    """`data` (plain YAML/JSON values) as `model`, or `error` listing every problem with its key path.
    `context` reaches the validators (a recipe's directory, for its relative paths)."""
    try:
        text = json.dumps(data, allow_nan=True)
    except (TypeError, ValueError) as err:  # YAML dates, sets, ...: not a config value
        raise error(f"{source}: holds a value that is not plain data ({err})") from None
    try:
        return model.model_validate_json(text, strict=True, context=context)
    except ValidationError as err:
        lines = [f"{source}: {len(err.errors())} problem(s)"]
        lines += ["  " + describe_problem(model, problem) for problem in err.errors()]
        raise error("\n".join(lines)) from None


def describe_problem(root: type[BaseModel], problem: dict[str, Any]) -> str:
    loc = tuple(problem["loc"])
    where = ".".join(str(p) for p in loc) or "(top level)"
    if problem["type"] == "extra_forbidden":
        parent = model_at(root, loc[:-1])
        allowed = ", ".join(parent.model_fields) if parent else "?"
        return f"{where}: unknown key {loc[-1]!r} (allowed here: {allowed})"
    if problem["type"] in ("int_type", "float_type", "bool_type", "string_type") and "input" in problem:
        return f"{where}: {problem['msg']}, got {problem['input']!r} (values are not converted: write it as one)"
    if problem["type"] == "value_error" and "error" in problem.get("ctx", {}):
        return f"{where}: {problem['ctx']['error']}"  # our own validators' messages, without "Value error, "
    return f"{where}: {problem['msg']}"


def model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model class that validates the value at `loc` (for naming allowed keys)."""
    current: Any = model
    for part in loc:
        current = unwrap_optional(current)
        if isinstance(part, int):
            args = typing.get_args(current)
            current = args[0] if args else None
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)) or part not in current.model_fields:
            return None
        current = current.model_fields[part].annotation
    current = unwrap_optional(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def unwrap_optional(annotation: Any) -> Any:
    """Strip Optional[...] / X | None down to X."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(options) == 1:
            return options[0]
    return annotation


def type_name(annotation: Any) -> str:
    """A short readable name of a field's type, for `vlcurate stages` and docs."""
    if isinstance(annotation, type):
        return annotation.__name__
    text = str(annotation).replace("typing.", "")
    for prefix in ("manifests.recipe_paths.", "manifests.", "pipelines.stages.", "pipelines."):
        text = text.replace(prefix, "")
    return text
