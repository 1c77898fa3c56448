"""Strict configuration models and one way to validate them, shared by recipes and trainer configs.

Values are validated in pydantic's strict JSON mode: an integer field refuses "3", `yes` (YAML's
boolean) and 200.0 instead of coercing them, while YAML lists still fill tuple fields and integers
still fill float fields. Every problem is reported with its dotted key path and, for an unknown
key, the keys allowed at that place.
"""

from __future__ import annotations

import difflib
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


def check_ordered(config: BaseModel, *pairs: tuple[str, str]) -> None:
    """A minimum above its maximum passes no record at all: refused (ValueError) instead of
    rejecting every record. None on either side means that bound is off."""
    for low, high in pairs:
        a, b = getattr(config, low), getattr(config, high)
        if a is not None and b is not None and a > b:
            raise ValueError(f"{low} {a} > {high} {b}: nothing could pass")


def validate_strict(model: type[M], data: Any, source: str, error: type[Exception],
                    context: dict[str, Any] | None = None, origins: dict[str, str] | None = None) -> M:
    """`data` (plain YAML/JSON values) as `model`, or `error` listing every problem with its key path.
    `context` reaches the validators (a recipe's directory, for its relative paths). `origins`: dotted
    key -> what set it other than `source` (a `--key=value` override): a problem at, above or below such
    a key is named by it, and `source` heads the message only when a problem is in the file."""
    try:
        text = json.dumps(data, allow_nan=True)
    except (TypeError, ValueError) as err:  # YAML dates, sets, ...: not a config value
        raise error(f"{source}: holds a value that is not plain data ({err})") from None
    try:
        return model.model_validate_json(text, strict=True, context=context)
    except ValidationError as err:
        problems = err.errors()
    origins = origins or {}
    lines, in_source = [], not origins
    for problem in problems:
        where = ".".join(str(p) for p in problem["loc"])
        related = [k for k in origins if where == k or where.startswith(k + ".") or k.startswith(where + ".")]
        line = describe_problem(model, problem)
        if related:
            line = f"{origins[max(related, key=len)]}: {line}"
        in_source |= not related
        lines.append("  " + line)
    head = source if in_source else "command-line overrides"
    raise error("\n".join([f"{head}: {len(problems)} problem(s)", *lines])) from None


def describe_problem(root: type[BaseModel], problem: dict[str, Any]) -> str:
    loc = tuple(problem["loc"])
    where = ".".join(str(p) for p in loc) or "(top level)"
    if problem["type"] == "extra_forbidden":
        parent = model_at(root, loc[:-1])
        allowed = ", ".join(parent.model_fields) if parent else "?"
        hint = _did_you_mean(root, parent, str(loc[-1]), ".".join(str(p) for p in loc[:-1]))
        return f"{where}: unknown key {loc[-1]!r}{hint} (allowed here: {allowed})"
    if problem["type"] == "string_type" and isinstance(problem.get("input"), bool):  # `no`: Norwegian, or false?
        return (f"{where}: {problem['msg']}, got {problem['input']!r} (YAML reads no, yes, on and off as "
                "booleans: quote it, e.g. \"no\")")
    if problem["type"] in ("int_type", "float_type", "bool_type", "string_type") and "input" in problem:
        return f"{where}: {problem['msg']}, got {problem['input']!r} (values are not converted: write it as one)"
    if problem["type"] in ("greater_than", "greater_than_equal", "less_than", "less_than_equal") and "input" in problem:
        return f"{where}: {problem['msg']}, got {problem['input']!r}"
    if problem["type"] == "value_error" and "error" in problem.get("ctx", {}):
        return f"{where}: {problem['ctx']['error']}"  # our own validators' messages, without "Value error, "
    return f"{where}: {problem['msg']}"


def _did_you_mean(root: type[BaseModel], parent: type[BaseModel] | None, key: str, section: str) -> str:
    """A close key in the same section, else in the sections below it, else anywhere (named by its
    dotted path: `run.warmup_step` -> `optim.warmup_steps`, `heuristics.min_word` -> `heuristics.caption.min_words`)."""
    if parent is not None:
        close = difflib.get_close_matches(key, list(parent.model_fields), n=1, cutoff=0.75)
        if close:
            return f": did you mean {close[0]!r}?"
    for model, prefix in ((parent, f"{section}." if section else ""), (root, "")):
        if model is None:
            continue
        paths: dict[str, str] = {}
        for key_name, path in _key_paths(model, prefix):
            paths.setdefault(key_name, path)  # the shallowest path of a name (adapter.heads, not tiny_lm's)
        close = difflib.get_close_matches(key, list(paths), n=1, cutoff=0.75)
        if close:
            return f": did you mean {paths[close[0]]!r}?"
    return ""


def _key_paths(model: type[BaseModel], prefix: str = "", depth: int = 0):
    """(key, dotted path) of every key in the model's nested sections, shallowest first."""
    nested = []
    for name, field in model.model_fields.items():
        yield name, prefix + name
        inner = unwrap_optional(field.annotation)
        if depth < 4 and isinstance(inner, type) and issubclass(inner, BaseModel):
            nested.append((inner, f"{prefix}{name}."))
    for inner, inner_prefix in nested:
        yield from _key_paths(inner, inner_prefix, depth + 1)


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
