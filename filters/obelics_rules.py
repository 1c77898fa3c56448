"""OBELICS' node-level and document-level rules on a Document (pure; thresholds from a config).

Node level (OBELICS config_filter_web_documents.yaml, l.14-38): each paragraph is measured and
removed at its first failing rule; each image node whose URL holds a banned word (OBELICS
build_obelics/04_merge_web_docs_with_images.py:15) or repeats an earlier image of the same document
(13_final_processing.py:100-116) is removed. Removals are edits: the document goes on, and each
removal is counted under its reason.

Document level (same file, l.40-64): the document's text is its paragraphs joined by blank lines;
the first failing rule rejects it. Language: fastText lid.176 on the lower-cased text with newlines
as spaces (web_document_filtering.py:343-357).

The config objects are duck-typed (the stage's pydantic models, pipelines/stages/obelics_*.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from filters.document import Document, ImageNode, TextNode
from filters.text_quality import TextStats, standardize_whitespace, text_stats, words_of
from filters.word_lists import common_words, flagged_words, stop_words


@dataclass
class WordLists:
    stop: frozenset[str]
    flagged: frozenset[str]
    common: frozenset[str]

    @classmethod
    def load(cls, config: Any) -> WordLists:
        return cls(stop_words("en"), flagged_words(config.flagged_words_file),
                   common_words("en", config.common_words_top_n))


TEXT_RULES = ("too_few_words", "too_many_words", "char_repetition", "word_repetition", "special_characters",
              "few_stop_words", "flagged_words", "low_punctuation", "few_common_words")


def _bounded(value: float, low: float | None, high: float | None) -> bool:
    return (low is None or value >= low) and (high is None or value <= high)


def text_failure(stats: TextStats, rules: Any) -> str | None:
    """The first rule (OBELICS' order) the text fails, by name, or None."""
    if not _bounded(stats.words, rules.min_words, rules.max_words):
        return "too_few_words" if stats.words < (rules.min_words or 0) else "too_many_words"
    checks = (
        ("char_repetition", stats.char_repetition <= rules.max_char_repetition),
        ("word_repetition", stats.word_repetition <= rules.max_word_repetition),
        ("special_characters", stats.special_characters <= rules.max_special_characters),
        ("few_stop_words", stats.stop_words >= rules.min_stop_words),
        ("flagged_words", stats.flagged_words <= rules.max_flagged_words),
        ("low_punctuation", stats.punctuation >= rules.min_punctuation),
        ("few_common_words", stats.common_words >= rules.min_common_words),
    )
    return next((name for name, ok in checks if not ok), None)


def measured_failure(text: str, rules: Any, words: WordLists, punctuation_min_tokens: int
                     ) -> tuple[str | None, TextStats | None, int]:
    """(first failed rule, the measures, word count). The word count is checked first: a paragraph of
    16 million characters is refused before its character 10-grams are counted (1.6 GB, measured)."""
    tokens = words_of(text)
    if not _bounded(len(tokens), rules.min_words, rules.max_words):
        return ("too_few_words" if len(tokens) < (rules.min_words or 0) else "too_many_words"), None, len(tokens)
    stats = text_stats(text, words.stop, words.flagged, words.common, punctuation_min_tokens, tokens)
    return text_failure(stats, rules), stats, len(tokens)


@dataclass
class NodeOutcome:
    document: Document
    edits: dict[str, int] = field(default_factory=dict)  # reason -> nodes removed


def filter_nodes(doc: Document, config: Any, words: WordLists) -> NodeOutcome:
    """Remove the paragraphs and image nodes OBELICS' node-level rules remove; count each by reason."""
    outcome = NodeOutcome(doc)
    kept, seen_images = [], set()
    banned = tuple(w.lower() for w in config.image_url_ban_words)
    for node in doc.nodes:
        reason = None
        if isinstance(node, TextNode):
            failed = measured_failure(standardize_whitespace(node.text), config, words, config.punctuation_min_words)[0]
            reason = f"paragraph_{failed}" if failed else None
        elif isinstance(node, ImageNode):
            url = (node.url or "").lower()
            if any(word in url for word in banned):
                reason = "image_url_banned"
            elif config.drop_repeated_images and node.url in seen_images:
                reason = "image_repeated_in_document"
            seen_images.add(node.url)
        if reason is None:
            kept.append(node)
        else:
            outcome.edits[reason] = outcome.edits.get(reason, 0) + 1
    doc.nodes = kept
    return outcome


def document_text(doc: Document) -> str:
    return "\n\n".join(n.text for n in doc.nodes if isinstance(n, TextNode))


def document_failure(doc: Document, config: Any, words: WordLists, language=None) -> tuple[str, str] | None:
    """(reason, detail) of the first document rule failed, or None; records the measures it took
    on doc.annotations (word count, language and its score) so reports can plot them."""
    images = sum(1 for n in doc.nodes if isinstance(n, ImageNode))
    if not _bounded(images, config.min_images, config.max_images):
        return ("document_too_few_images" if images < (config.min_images or 0) else "document_too_many_images",
                f"{images} images, allowed [{config.min_images}, {config.max_images}]")
    text = document_text(doc)
    failed, stats, n_words = measured_failure(text, config, words, 0)
    doc.annotations["doc_words"] = n_words
    doc.annotations["doc_images"] = images
    if failed:
        return f"document_{failed}", _detail(failed, stats, config) if stats else \
            f"{n_words} words, allowed [{config.min_words}, {config.max_words}]"
    if language is not None and config.languages:
        (guess,) = language.predict([text.lower()])
        doc.annotations["language"] = guess.label
        doc.annotations["language_score"] = round(guess.score, 4)
        if guess.label not in config.languages:
            return "document_language_not_allowed", f"{guess.label} ({guess.score:.2f})"
        if guess.score < config.min_language_score:
            return "document_language_score_low", f"{guess.label} {guess.score:.2f} < {config.min_language_score}"
    return None


def _detail(failed: str, stats: TextStats, config: Any) -> str:
    measure = {"too_few_words": ("words", stats.words, config.min_words),
               "too_many_words": ("words", stats.words, config.max_words),
               "char_repetition": ("char repetition", stats.char_repetition, config.max_char_repetition),
               "word_repetition": ("word repetition", stats.word_repetition, config.max_word_repetition),
               "special_characters": ("special characters", stats.special_characters, config.max_special_characters),
               "few_stop_words": ("stop words", stats.stop_words, config.min_stop_words),
               "flagged_words": ("flagged words", stats.flagged_words, config.max_flagged_words),
               "low_punctuation": ("punctuation", stats.punctuation, config.min_punctuation),
               "few_common_words": ("common words", stats.common_words, config.min_common_words)}[failed]
    name, value, limit = measure
    return f"{name} {value:.4g} (limit {limit})"
