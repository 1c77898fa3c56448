"""OBELICS' text-quality metrics, as their filtering code defines them (huggingface/OBELICS,
obelics/processors/web_document_filtering.py; the BigScience ROOTS filters before it).

Words: the text split on space, newline and tab, lower-cased, with special characters stripped from
both ends of each word (so "2019" vanishes and "don't" stays); `get_words_from_text`, l.90-139.

- character repetition: character 10-grams; the share of all 10-gram occurrences taken by the
  k most frequent ones, k = min(floor(sqrt(distinct 10-grams)), number of 10-grams seen more than
  once) (l.151-169);
- word repetition: word 5-grams; the share of occurrences belonging to 5-grams seen more than once
  (l.185-199);
- special characters: the share of characters that are punctuation, digits, whitespace or symbols
  (l.215-219; OBELICS lists them by hand plus the `emoji` package's list; here: Unicode categories
  P*, S*, Z*, Nd and whitespace (emoji are S*), plus the characters of their list those classes
  miss. Symbols and punctuation they did not list count too: no decision changed on 693 real
  paragraphs);
- stop words / flagged words / common words: the share of words in each list (l.231-324);
- punctuation: tokens `[\\w']+|[,;:?!.]`, the share that are punctuation; 0.0 for a text with no
  token, 1.0 for texts of fewer than `min_tokens` tokens (the node-level rule applies from 12
  tokens; l.276-298).

Word lists come from real sources (see word_lists.py), never invented here.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

CHAR_NGRAM = 10  # OBELICS config: char_rep n = 10
WORD_NGRAM = 5  # OBELICS config: word_rep n = 5
_SPLIT = re.compile(r"[ \n\t]+")
_PUNCT_TOKENS = re.compile(r"[\w']+|[,;:?!.]")
_PUNCTUATION = frozenset(",;:?!.")
# Unicode spaces OBELICS maps to " " before node-level metrics (standardize_whitespace, l.66-88).
_ODD_SPACES = re.compile("[\u2009\u200a\u202f\u2005\u3000\u2002\u2008\u2003\u2004\u2006\u2007\u00a0\ufffc\u0084]")


# Characters of OBELICS' hand-kept list (filtering_utils.py:47-58) that the Unicode classes below do
# not cover: C1 controls of mis-decoded text, zero-width space, BOM, soft hyphen, superscripts and
# fractions, and a few letters their crawl saw as noise.
_OBELICS_EXTRA_SPECIAL = frozenset("\u0081\u0082\u0083\u0084\u0091\u0092\u0093\u0095\u0096\u0097\u0098\u0099\u009c\u009dª\u00ad²³¹º¼½¾øıɪʺʻʼˈˌːπГهाीे्ॽা\u200bシッツンー一上士\ufeff")


@lru_cache(maxsize=4096)
def is_special(char: str) -> bool:
    if char.isspace() or char in _OBELICS_EXTRA_SPECIAL:
        return True
    category = unicodedata.category(char)
    return category[0] in "PSZ" or category == "Nd"


def standardize_whitespace(text: str) -> str:
    return _ODD_SPACES.sub(" ", text)


def _strip_special(word: str) -> str:
    start, end = 0, len(word)
    while start < end and is_special(word[start]):
        start += 1
    while end > start and is_special(word[end - 1]):
        end -= 1
    return word[start:end]


def words_of(text: str) -> list[str]:
    out = []
    for raw in _SPLIT.split(text):
        if raw:
            word = _strip_special(raw.lower())
            if word:
                out.append(word)
    return out


def char_repetition_ratio(text: str, n: int = CHAR_NGRAM) -> float:
    if len(text) < n:
        return 0.0
    counts = sorted(Counter(text[i : i + n] for i in range(len(text) - n + 1)).values(), reverse=True)
    repeated = sum(1 for c in counts if c > 1)
    k = min(int(math.sqrt(len(counts))), repeated)
    return sum(counts[:k]) / sum(counts)


def word_repetition_ratio(words: list[str], n: int = WORD_NGRAM) -> float:
    if len(words) < n:
        return 0.0
    counts = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1)).values()
    return sum(c for c in counts if c > 1) / sum(counts)


def special_character_ratio(text: str) -> float:
    return sum(1 for c in text if is_special(c)) / len(text) if text else 0.0


def share_in(words: list[str], vocabulary: frozenset[str]) -> float:
    return sum(1 for w in words if w in vocabulary) / len(words) if words else 0.0


def punctuation_ratio(text: str, min_tokens: int = 0) -> float:
    tokens = _PUNCT_TOKENS.findall(text)
    if not tokens:
        return 0.0  # nothing to judge by: fails, as in OBELICS (l.289-290)
    if len(tokens) < min_tokens:
        return 1.0  # too short to judge: passes (OBELICS' rule)
    return sum(1 for t in tokens if t in _PUNCTUATION) / len(tokens)


@dataclass(frozen=True, slots=True)
class TextStats:
    words: int
    char_repetition: float
    word_repetition: float
    special_characters: float
    stop_words: float
    flagged_words: float
    punctuation: float
    common_words: float


def text_stats(text: str, stop_words: frozenset[str], flagged_words: frozenset[str],
               common_words: frozenset[str], punctuation_min_tokens: int = 0,
               words: list[str] | None = None) -> TextStats:
    words = words_of(text) if words is None else words
    return TextStats(
        words=len(words),
        char_repetition=char_repetition_ratio(text),
        word_repetition=word_repetition_ratio(words),
        special_characters=special_character_ratio(text),
        stop_words=share_in(words, stop_words),
        flagged_words=share_in(words, flagged_words),
        punctuation=punctuation_ratio(text, punctuation_min_tokens),
        common_words=share_in(words, common_words),
    )
