"""OBELICS node-level filtering: remove boilerplate paragraphs and unwanted image nodes from
documents (filters/obelics_rules.py). Each removal is an edit counted per reason; documents are
kept, however much they lose (the document rules decide on them).
"""

from __future__ import annotations

from pydantic import Field, model_validator

from filters.document import Document
from filters.obelics_rules import TEXT_RULES, WordLists, filter_nodes
from filters.records import DOCUMENT, edit
from filters.word_lists import flagged_words
from manifests.recipe_paths import RecipePath
from manifests.schema import Strict, check_ordered
from pipelines.beam.routing import PerRecord, RoutedDoFn
from pipelines.stages.spec import Preflight, StageSpec

STAGE = "obelics_nodes"
# OBELICS build_obelics/04_merge_web_docs_with_images.py:15 (matched there case-sensitively; here
# in the lower-cased URL, so Logo.png goes too).
URL_BAN_WORDS = ("logo", "button", "icon", "plugin", "widget", "porn", "xxx", "sex")


class WordListConfig(Strict):
    flagged_words_file: RecipePath | None = Field(None, description="one word per line; default: the shipped "
                                                  "OBELICS list (manifests/wordlists/flagged_words_en.txt)")
    common_words_top_n: int = Field(100_000, ge=1, description="common words: wordfreq's top n English words "
                                    "(100k: every English test page scores >= 0.93 at document level)")


class NodeRulesConfig(WordListConfig):
    """Per paragraph, OBELICS config_filter_web_documents.yaml l.14-38 (kept when within bounds)."""

    min_words: int | None = Field(4, ge=0)
    max_words: int | None = Field(1000, ge=1)
    max_char_repetition: float = Field(0.1, ge=0, le=1, description="character 10-grams")
    max_word_repetition: float = Field(0.1, ge=0, le=1, description="word 5-grams")
    max_special_characters: float = Field(0.3, ge=0, le=1)
    min_stop_words: float = Field(0.3, ge=0, le=1)
    max_flagged_words: float = Field(0.01, ge=0, le=1)
    min_punctuation: float = Field(0.001, ge=0, le=1)
    punctuation_min_words: int = Field(12, ge=0, description="the punctuation rule applies from this many tokens")
    min_common_words: float = Field(0.8, ge=0, le=1)
    image_url_ban_words: tuple[str, ...] = Field(URL_BAN_WORDS, description="image nodes whose URL holds one go")
    drop_repeated_images: bool = Field(True, description="an image URL seen earlier in the same document goes")

    @model_validator(mode="after")
    def _bounds_in_order(self) -> NodeRulesConfig:
        check_ordered(self, ("min_words", "max_words"))
        return self


class _NodesFn(RoutedDoFn):
    stage = STAGE

    def __init__(self, config: NodeRulesConfig):
        self.config = config

    def setup(self):
        self.words = WordLists.load(self.config)

    def handle(self, doc):
        outcome = filter_nodes(doc, self.config, self.words)
        return [outcome.document, *(edit(reason, n) for reason, n in sorted(outcome.edits.items()))]


def check_word_lists(config: WordListConfig) -> Preflight:
    flagged_words(config.flagged_words_file)  # a missing file stops the run here, naming the key
    return Preflight()


SPEC = StageSpec(
    name=STAGE,
    summary="OBELICS paragraph rules (words, repetition, special/stop/flagged/common words, punctuation) "
            "and image URL rules; removals are edits",
    config=NodeRulesConfig,
    build=lambda config, context: PerRecord("Paragraphs", _NodesFn(config), Document),
    accepts=(DOCUMENT,),
    produces=DOCUMENT,
    edits=(*(f"paragraph_{r}" for r in TEXT_RULES), "image_url_banned", "image_repeated_in_document"),
    preflight=check_word_lists,
)
