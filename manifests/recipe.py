"""The recipe: a YAML file that says which stages run, in which order, with which settings.

Validated with pydantic before anything runs: an unknown key or a bad value stops the run and
names the key, with the keys or values allowed there. Relative paths in a recipe file resolve
against the file's directory (manifests/recipe_paths.py). The file is read with YAML 1.2's floats, so
`min_score: 5e-1` is a number (manifests/yaml_numbers.py).
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, create_model, field_validator, model_validator

from filters.record_checks import DEFAULT_MAX_CAPTION_CHARS, DEFAULT_MAX_JSON_DEPTH
from filters.records import SAMPLE
from manifests.recipe_paths import RECIPE_DIR
from manifests.schema import Strict, validate_strict
from manifests.shard_format import IMAGE_EXTENSIONS, ORIGINAL_IMAGE_MEMBER
from manifests.yaml_numbers import load_yaml


class RecipeError(ValueError):
    """A recipe that cannot run; the message names the key and what is allowed."""


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
    timeout: float = Field(10, gt=0, description="seconds a socket may wait for each read")
    deadline: float = Field(60, gt=0, description="seconds for a whole request: a server dripping bytes is cut off")
    max_pixels: int | None = Field(89_478_485, gt=0, description="images declaring more pixels are refused "
                                   "from their header, before img2dataset decodes them")
    user_agent_token: str | None = Field("vlcurate", description="added to the User-Agent; matched in X-Robots-Tag")
    honor_robots_tag: bool = Field(True, description="skip images whose X-Robots-Tag opts out")
    disallowed_header_directives: tuple[str, ...] = ("noai", "noimageai", "noindex", "noimageindex")
    incremental: bool = Field(True, description="a rerun resumes an interrupted download, skipping finished shards")
    allow_incomplete: bool = Field(False, description="record shards img2dataset gave up on as download_incomplete "
                                   "rows and finish; default: stop, so the rerun resumes them")
    distributor: Literal["multiprocessing", "pyspark", "ray"] = "multiprocessing"
    allow_private_networks: bool = Field(False, description="fetch loopback/private/link-local addresses")


# ---------------------------------------------------------------- the recipe
class _StageEntryBase(Strict):
    """One item of `stages:`, a mapping with exactly one key: the stage's name (see `vlcurate stages`)."""

    @model_validator(mode="after")
    def exactly_one_stage(self):
        if sum(getattr(self, k) is not None for k in type(self).model_fields) != 1:
            raise ValueError("each stage is a mapping with one key, the stage name")
        return self

    @property
    def name(self) -> str:
        return next(k for k in type(self).model_fields if getattr(self, k) is not None)

    @property
    def config(self) -> Strict:
        return getattr(self, self.name)

    @property
    def spec(self):
        from pipelines.stages import get_spec

        return get_spec(self.name)


def _stage_entry_model() -> type[_StageEntryBase]:
    """StageEntry has one optional field per registered stage, typed by that stage's config model."""
    from pipelines.stages import registry

    fields = {name: (spec.config | None, None) for name, spec in registry().items()}
    return create_model("StageEntry", __base__=_StageEntryBase, **fields)


StageEntry = _stage_entry_model()


class ParquetColumns(Strict):
    key: str = "key"
    image: tuple[str, ...] = ("jpg", "png", "webp", "image")
    caption: tuple[str, ...] = ("caption", "txt", "text")
    url: str = "url"


class WebInputConfig(Strict):
    """How web inputs (WARC files, saved pages, tables of url + html) are read into documents."""

    max_record_bytes: int = Field(64 << 20, gt=0, description="WARC records (or gzip members) larger are "
                                  "rejected unread (warc_record_too_large)")
    max_gzip_member_bytes: int = Field(16 << 30, gt=0, description="a gzip member inflating past this is one "
                                       "rejection (a whole-file gzip WARC is one member; beyond 256 MiB it spills "
                                       "to a temporary file)")
    max_html_bytes: int = Field(32 << 20, gt=0, description="larger pages are rejected (html_too_large)")
    max_html_elements: int = Field(1_000_000, gt=0, description="pages whose HTML5 parse would build more "
                                   "elements are rejected before parsing (html_too_complex): formatting tags left "
                                   "open are rebuilt in every paragraph, so a 120 KB page can build 9 million "
                                   "(filters/html_cost.py); real pages build hundreds to thousands")
    url_column: str = Field("url", description="tables of pages: the page URL column")
    html_column: str = Field("html", description="tables of pages: the HTML column (text or bytes)")
    key_column: str = Field("key", description="tables of pages: the key column, if any")


class InputConfig(Strict):
    kind: Literal["sample", "document"] = Field(
        "sample", description="sample: webdataset tars or parquets of image-text pairs; document: WARC files, "
        "saved .html pages or tables of url + html, read into interleaved documents")
    web: WebInputConfig = WebInputConfig()
    image_extensions: tuple[str, ...] = ("jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff")
    max_member_bytes: int = Field(64 << 20, gt=0, description="larger tar members are rejected, not read")
    max_caption_chars: int = Field(DEFAULT_MAX_CAPTION_CHARS, gt=0,
                                   description="longer captions are rejected on read (caption_too_long)")
    max_json_depth: int = Field(DEFAULT_MAX_JSON_DEPTH, gt=0,
                                description="KEY.json nested deeper is rejected on read (metadata_too_deep)")
    parquet: ParquetColumns = ParquetColumns()


class ImagesConfig(Strict):
    """Images of documents (input.kind: document)."""

    fetch: bool = Field(True, description="false: documents keep their image URLs only, to fetch later (a stage "
                        "that fetches, fetch_images, then passes them through)")


class OutputConfig(Strict):
    samples_per_shard: int = Field(1000, ge=1)
    rejected_rows_per_file: int = Field(500_000, ge=1)
    image_member: str = Field("jpg", description="the extension every pair image is written under, whatever its "
                              "format (KEY.json's image_format says which), as img2dataset does: readers that infer "
                              "columns from the first samples (HF datasets) then see every image; `original`: "
                              "each image under its own format's extension")

    @field_validator("image_member")
    @classmethod
    def known_member(cls, value: str) -> str:
        if value != ORIGINAL_IMAGE_MEMBER and value not in IMAGE_EXTENSIONS:
            raise ValueError(f"image_member must be {ORIGINAL_IMAGE_MEMBER!r} or one of {', '.join(IMAGE_EXTENSIONS)}")
        return value


class Recipe(Strict):
    name: str
    description: str = ""
    seed: int = Field(0, description="all random choices derive from (sample key, seed)")
    download: DownloadConfig | None = Field(None, description="fetch a URL list first (vlcurate download)")
    input: InputConfig = InputConfig()
    stages: Annotated[list[StageEntry], Field(min_length=0)] = []
    images: ImagesConfig = ImagesConfig()
    output: OutputConfig = OutputConfig()

    @model_validator(mode="after")
    def stages_fit_together(self) -> Recipe:
        names = [s.name for s in self.stages]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"stage(s) listed twice: {', '.join(duplicates)}")
        if self.download is not None and self.input.kind != SAMPLE:
            raise ValueError("download: fetches image-text pairs; it cannot be combined with input.kind "
                             f"{self.input.kind!r}")
        stages = assemble(self.stages, self.input.kind)
        if not self.images.fetch:  # `images: {fetch: false}` reaches every stage that fetches images
            stages = [type(e)(**{e.name: e.config.model_copy(update={"fetch": False})})
                      if "fetch" in type(e.config).model_fields else e for e in stages]
        object.__setattr__(self, "stages", stages)  # frozen model: once, here
        return self

    def resolved(self) -> dict[str, Any]:
        """Every setting, defaults included, as plain data (what the manifest records)."""
        return self.model_dump(mode="json", exclude_none=True)


def assemble(stages: list[_StageEntryBase], kind: str = SAMPLE) -> list[_StageEntryBase]:
    """Check the stages fit in order, from what each one declares: each accepts the record kind the
    one before it produces, finds the annotations it requires among those provided before it, and
    resolves its settings against the stages that provide what it uses (tmars inherits the model of
    the clipscore stage whose embeddings it reuses)."""
    from pipelines.stages import registry

    specs, provided, resolved = registry(), {}, []
    for i, entry in enumerate(stages):
        spec, config = entry.spec, entry.config
        where = f"stages.{i}.{spec.name}"
        if kind not in spec.accepts:
            raise ValueError(f"{where}: accepts {', '.join(spec.accepts)} records, but gets {kind} records here")
        if spec.resolve is not None:
            try:
                config = spec.resolve(config, {a: provided[a][1] for a in spec.uses if a in provided})
            except ValueError as err:
                raise ValueError(f"{where}: {err}") from None
            entry = type(entry)(**{spec.name: config})
        missing = [a for a in spec.requires if a not in provided]
        if missing:
            by = sorted(n for n, s in specs.items() if missing[0] in s.provides)
            # a stage before it that provides it only when configured so (tmars with a model)
            could = [e.name for e in stages[:i] if e.name in by]
            hint = (f"the {could[0]} stage before it does not provide it as configured (give it a model)" if could
                    else f"put one of ({', '.join(by) or 'none'}) before it")
            raise ValueError(f"{where}: {spec.name} needs {missing[0]}, which no stage before it provides: {hint}")
        for annotation in spec.provided(config):
            provided[annotation] = (spec.name, config)
        kind = spec.produces
        resolved.append(entry)
    return resolved


def output_kind(recipe: Recipe) -> str:
    """The kind of record the run's shards hold: what the last stage produces, else what is read."""
    return recipe.stages[-1].spec.produces if recipe.stages else recipe.input.kind


# ---------------------------------------------------------------- loading
def load_recipe(path: str | Path) -> Recipe:
    """A recipe file; the relative paths in it (fields typed RecipePath) mean paths beside it."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe {path} is a folder; give its YAML file" if path.is_dir()
                          else f"recipe {path} does not exist")
    try:
        data = load_yaml(path.read_text(encoding="utf-8"))  # 1e-4 is a float
    except yaml.YAMLError as err:
        raise RecipeError(f"recipe {path} is not valid YAML: {err}") from err
    # abspath, not resolve(): a recipe reached through a symlink means files beside the link.
    return parse_recipe(data, source=str(path), base_dir=os.path.abspath(path.parent))


def parse_recipe(data: Any, source: str = "recipe", base_dir: str | os.PathLike | None = None) -> Recipe:
    """A recipe from plain data; relative paths resolve against `base_dir` when given, else they stay
    as written (relative to the working directory)."""
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: a recipe is a mapping with keys {', '.join(Recipe.model_fields)}")
    if isinstance(data.get("stages"), list):
        data = {**data, "stages": [_stage_item(item, i, source) for i, item in enumerate(data["stages"])]}
    context = {RECIPE_DIR: os.path.abspath(base_dir)} if base_dir is not None else None
    return validate_strict(Recipe, data, source, RecipeError, context=context)


def _stage_item(item: Any, index: int, source: str) -> Any:
    """Check a `stages:` item names one known stage (before validation, which stays in strict JSON
    mode only without before-validators); `- heuristics:` with nothing below means all defaults."""
    allowed = sorted(StageEntry.model_fields)
    if not isinstance(item, dict) or len(item) != 1:
        raise RecipeError(f"{source}: stages.{index}: each stage is a mapping with one key, the stage name "
                          f"(one of: {', '.join(allowed)})")
    ((name, body),) = item.items()
    if name not in allowed:
        close = difflib.get_close_matches(str(name).replace("-", "_"), allowed, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise RecipeError(f"{source}: stages.{index}: unknown stage {name!r}; {hint}allowed: {', '.join(allowed)} "
                          "(`vlcurate stages` lists them with their settings)")
    return {name: {} if body is None else body}
