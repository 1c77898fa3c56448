"""Documents -> image-text pairs (filters/document_pairs.py), counted as conversions: each document
converted is one `converted` document, each pair made one `produced` sample, so accounting holds
per kind. A document that yields no pair is rejected (`no_pair`), not silently converted to nothing.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from filters.document_pairs import document_pairs
from filters.records import DOCUMENT, SAMPLE, Event
from filters.sample import Rejection, Sample
from manifests.schema import Strict
from pipelines.beam.routing import PerRecord, RoutedDoFn
from pipelines.stages.spec import StageSpec

STAGE = "documents_to_pairs"


class DocumentsToPairsConfig(Strict):
    caption_from: tuple[Literal["alt", "paragraph"], ...] = Field(
        ("alt", "paragraph"), min_length=1, description="where a caption may come from, in order")
    min_words: int = Field(3, ge=1, description="a caption has at least this many words (DataComp: > 2)")
    max_words: int = Field(60, ge=1, description="and at most this many (CLIP reads 77 tokens)")
    max_distance: int = Field(2, ge=1, description="a paragraph at most this many nodes from the image")

    @model_validator(mode="after")
    def words_in_order(self) -> DocumentsToPairsConfig:
        if self.min_words > self.max_words:
            raise ValueError(f"min_words {self.min_words} > max_words {self.max_words}: no caption could fit")
        return self


class _PairsFn(RoutedDoFn):
    stage = STAGE

    def __init__(self, config: DocumentsToPairsConfig):
        self.config = config

    def handle(self, doc):
        pairs = document_pairs(doc, self.config)
        skipped = [Event(DOCUMENT, "edit", reason, n) for reason, n in sorted(pairs.skipped.items())]
        if not pairs.samples:
            return [*skipped, Rejection.of(doc, STAGE, "no_pair", f"{sum(pairs.skipped.values())} images, none "
                                                                  "with bytes and a caption")]
        return [*skipped, Event(DOCUMENT, "converted", "to_pairs"),
                Event(SAMPLE, "produced", "from_documents", len(pairs.samples)), *pairs.samples]


SPEC = StageSpec(
    name=STAGE,
    summary="documents -> image-text pairs (alt text, or the nearest paragraph under a length rule), "
            "counted as conversions, so the pair stages run on crawl data",
    config=DocumentsToPairsConfig,
    build=lambda config, context: PerRecord("ToPairs", _PairsFn(config), Sample),
    accepts=(DOCUMENT,),
    produces=SAMPLE,
    reasons=("no_pair",),
    edits=("image_not_fetched", "image_without_caption"),
)
