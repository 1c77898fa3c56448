"""Paths in recipes resolve against the recipe file, not the directory vlcurate is started from.

A recipe names files that usually travel with it (MetaCLIP metadata, checkpoints, target embeddings,
word lists); a relative path in it means "beside this recipe", as in any config format that points at
files. A config field declares that it holds a path by its type, once, where the field is defined:

- `RecipePath`: a local path or an fsspec URL. Relative paths resolve against the recipe's directory.
- `RecipePathOrName`: a local path, or a name its loader looks up elsewhere (an open_clip pretrained
  tag, a hub id, a spaCy package). It resolves only when it reads as a path (`./`, `../`, `~`) or
  names something that exists beside the recipe, so `openai` or `google/owlv2-base-patch16-ensemble`
  stay names.

Absolute paths and URLs (`s3://...`, `gs://...`, `hf-hub:...`) are never changed; `~` is expanded.
Resolution happens while the recipe is validated, and only when the loader passes the recipe's
directory in the validation context (`load_recipe` does): a config built in code, or a recipe parsed
from a dict without a directory, keeps its values as written (relative to the working directory).
The validated value is a plain `str`, absolute after resolution, which is what the manifest records.
"""

from __future__ import annotations

import os
import re
from typing import Any

from pydantic import GetCoreSchemaHandler, ValidationInfo
from pydantic_core import core_schema

RECIPE_DIR = "recipe_dir"  # validation-context key: the directory relative paths resolve against
# A scheme: s3://, gs://, file://, https://, hf-hub:. Two characters at least, so a Windows drive
# letter is not one.
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]+:")


def resolve_recipe_path(value: str, base: str | os.PathLike | None, name_allowed: bool = False) -> str:
    """`value` as the recipe means it: against `base` when relative; unchanged without a base, for
    URLs, and (name_allowed) for a name that is neither written as a path nor found beside the recipe."""
    if base is None or not value or _URL.match(value):
        return value
    expanded = os.path.expanduser(value)
    if os.path.isabs(expanded):
        return expanded
    candidate = os.path.normpath(os.path.join(os.fspath(base), expanded))
    if name_allowed and not (_written_as_path(value) or os.path.exists(candidate)):
        return value
    return candidate


def _written_as_path(value: str) -> bool:
    return value in (".", "..") or value.startswith(("./", "../"))


def _base(info: ValidationInfo) -> Any:
    return (info.context or {}).get(RECIPE_DIR) if isinstance(info.context, dict) else None


class RecipePath(str):
    """Type of a config field holding a local path (or URL); relative resolves against the recipe."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.with_info_after_validator_function(
            lambda value, info: resolve_recipe_path(value, _base(info)), core_schema.str_schema())


class RecipePathOrName(str):
    """Type of a config field holding a local path or a name its loader finds elsewhere."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.with_info_after_validator_function(
            lambda value, info: resolve_recipe_path(value, _base(info), name_allowed=True), core_schema.str_schema())
