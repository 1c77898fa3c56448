"""CIDEr-D (Vedantam et al. 2015) in plain Python, no Java, equal to pycocoevalcap's Cider scorer.

Tokenizer (`tokenize`): what coco-caption's PTBTokenizer (Stanford's, run with -lowerCase) and its
punctuation removal produce, without Java, for the text captions hold: lower-cased; clitics split
("don't" -> "do n't", "man's" -> "man 's"); words joined by hyphens or slashes kept whole
("red-orange", "dog/wolf"); "$5" and "50%" split into "$ 5", "50 %"; brackets become PTB's
-lrb- -rrb- -lsb- -rsb- -lcb- -rcb- tokens (coco-caption's list holds them upper-case, so it never
removes them); then the tokens coco-caption removes (quotes, . , ? ! : ; - -- ...) are dropped.
tests/test_cider.py compares it with the Java tokenizer where Java is installed; on 2,012 real web
alt texts (../shared/data/captions) 1,925 (95.7%) came out identical, the rest being web oddities
PTB splits its own way (units glued to numbers, "uk4.5-5", "?!"). On the same tokenised input the
scores are equal.

CIDEr-D per candidate: for n = 1..4, TF-IDF vectors of n-grams (IDF over the references of the
whole evaluated set), similarity = sum over the candidate's n-grams of min(g_c, g_r) * g_r divided
by both norms, times a Gaussian length penalty exp(-delta^2 / (2 sigma^2)), sigma = 6; averaged over
n and references, times 10. As in coco-caption, the length is counted in bigrams.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter

_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}
_TOKEN = re.compile(r"""
    (?P<word>\w+(?:[-/]\w+)*?)(?=n['’]t\b)  # the stem before n't ("do" of "don't", "ca" of "can't")
  | n['’]t\b
  | ['’](?:s|re|ve|ll|d|m)\b               # clitics, with a straight or a curly apostrophe
  | can(?=not\b)                          # "cannot" -> "can not", as PTB splits it
  | (?<![\w.+-])[\w.+-]{1,64}@\w+(?:\.\w+)+  # e-mail addresses (tried at a run's start only, and
                                          # bounded: a long run of [\w.+-] stays linear)
  | (?:[a-z]\.){2,}                        # abbreviations keep their periods: "u.s.", "p.m."
  | (?:mrs?|ms|dr|st|jr|sr|co|ltd|inc|no|vs|etc|jan|feb|mar|apr|jun|jul|aug|sept?|oct|nov|dec|[a-z])\.(?=\s+\S)
  | </?[a-z]+>                             # markup left in alt text: "<br>", "</b>"
  | \w+(?:['’](?!(?:s|re|ve|ll|d|m)\b)\w+)+  # "o'neill", "l'objet" (not a clitic)
  | \d+(?::\d+)+                           # times: "5:30"
  | [#@][^\W\d]\w*                          # #tag, @name stay whole ("#18" is "# 18")
  | \w+(?:&\w+)+                           # "at&t", "bb&n"
  | \w+(?:[-/.]\w+)*                       # words, "red-orange", "dog/wolf", "3.5", "u.s"
  | \.\.\.|--|``|''                          # multi-character punctuation
  | \S                                     # any other character on its own
""", re.VERBOSE)
# coco-caption's PUNCTUATIONS (pycocoevalcap/tokenizer/ptbtokenizer.py), as they compare lower-cased tokens
_DROPPED = frozenset({"''", "'", "``", "`", ".", "?", "!", ",", ":", "-", "--", "...", ";", '"'})


_DASHES = re.compile("[\u2012-\u2015]")  # en and em dashes: PTB's "--", which coco-caption drops


def _mark(char: str) -> bool:
    return unicodedata.category(char).startswith("M")


def tokenize(text: str) -> str:
    tokens: list[str] = []
    end = -1
    for match in _TOKEN.finditer(_DASHES.sub(" -- ", text.lower())):
        token = match.group(0)
        if tokens and match.start() == end and (_mark(token[0]) or _mark(tokens[-1][-1])):
            tokens[-1] += token  # a combining mark (Thai, Devanagari vowel signs) joins its letters
        else:
            tokens.append(_BRACKETS.get(token, token))
        end = match.end()
    return " ".join(t for t in tokens if t not in _DROPPED)


def _ngrams(sentence: str, n: int = 4) -> Counter:
    words = sentence.split()
    return Counter(tuple(words[i:i + k]) for k in range(1, n + 1) for i in range(len(words) - k + 1))


def cider_d(references: dict[str, list[str]], candidates: dict[str, str], n: int = 4,
            sigma: float = 6.0) -> tuple[float, dict[str, float]]:
    """Inputs already tokenised (space-separated). Returns (mean, per-id scores)."""
    ids = sorted(candidates)
    refs = {i: [_ngrams(r, n) for r in references[i]] for i in ids}
    document_frequency: Counter = Counter()
    for i in ids:
        document_frequency.update({g for r in refs[i] for g in r})
    log_docs = math.log(float(len(ids)))

    def vector(counts: Counter):
        vec = [dict() for _ in range(n)]
        norms = [0.0] * n
        length = 0
        for gram, tf in counts.items():
            k = len(gram) - 1
            weight = tf * (log_docs - math.log(max(1.0, document_frequency[gram])))
            vec[k][gram] = weight
            norms[k] += weight * weight
            if k == 1:
                length += tf  # coco-caption counts bigrams here
        return vec, [math.sqrt(x) for x in norms], length

    scores = {}
    for i in ids:
        vec_c, norm_c, len_c = vector(_ngrams(candidates[i], n))
        total = 0.0
        for ref in refs[i]:
            vec_r, norm_r, len_r = vector(ref)
            penalty = math.exp(-((len_c - len_r) ** 2) / (2 * sigma ** 2))
            for k in range(n):
                val = sum(min(w, vec_r[k].get(g, 0.0)) * vec_r[k].get(g, 0.0) for g, w in vec_c[k].items())
                if norm_c[k] and norm_r[k]:
                    val /= norm_c[k] * norm_r[k]
                total += val * penalty
        scores[i] = total / n / len(refs[i]) * 10.0
    return (sum(scores.values()) / len(scores) if scores else 0.0), scores
