"""CIDEr-D (Vedantam et al. 2015) in plain Python, no Java, equal to pycocoevalcap's Cider scorer.

Tokenizer (`tokenize`): lower-case, drop the punctuation PTBTokenizer drops in coco-caption
(`` '' ' ` - . ? , : ; ! _ * # % & $ ( ) [ ] { } / \\ " @ ^ ~ + = < > |), split on whitespace. It does
not split clitics ("don't" stays one token) as the Java PTB tokenizer would, so scores can differ from
coco-caption's on such captions; on the same tokenised input they are equal.

CIDEr-D per candidate: for n = 1..4, TF-IDF vectors of n-grams (IDF over the references of the
whole evaluated set), similarity = sum over the candidate's n-grams of min(g_c, g_r) * g_r divided
by both norms, times a Gaussian length penalty exp(-delta^2 / (2 sigma^2)), sigma = 6; averaged over
n and references, times 10. As in coco-caption, the length is counted in bigrams.
"""

from __future__ import annotations

import math
import re
from collections import Counter

_PUNCTUATION = re.compile(r"[''`\-.?,:;!_*#%&$()\[\]{}/\\\"@^~+=<>|]")


def tokenize(text: str) -> str:
    return " ".join(_PUNCTUATION.sub(" ", text.lower()).split())


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
