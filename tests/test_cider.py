"""CIDEr-D equals pycocoevalcap's Cider scorer on the same tokenised input, and hand-computed values."""

from __future__ import annotations

import math
import random

import pytest

from trainers.cider import cider_d, tokenize

COLOURS = ["red", "green", "blue", "yellow"]
SHAPES = ["circle", "square", "triangle", "star"]


def _random_set(seed: int, n: int = 30):
    rng = random.Random(seed)
    def caption():
        words = ["a", rng.choice(COLOURS), rng.choice(SHAPES), "on", "a", rng.choice(COLOURS), "background"]
        return " ".join(words[: rng.randint(3, 7)])
    refs = {str(i): [caption() for _ in range(rng.randint(1, 5))] for i in range(n)}
    cands = {str(i): caption() for i in range(n)}
    return refs, cands


@pytest.mark.parametrize("seed", range(5))
def test_equals_pycocoevalcap(seed):
    from pycocoevalcap.cider.cider import Cider

    refs, cands = _random_set(seed)
    mean, per = cider_d(refs, cands)
    theirs_mean, theirs = Cider().compute_score(refs, {k: [v] for k, v in cands.items()})
    assert mean == pytest.approx(float(theirs_mean), abs=1e-9)
    for i, k in enumerate(refs):  # pycocoevalcap returns scores in the order of its gts keys
        assert per[k] == pytest.approx(float(theirs[i]), abs=1e-9)


def test_hand_computed_two_images():
    # Two images; candidate 1 equals its only reference, candidate 2 shares nothing with its own.
    refs = {"1": ["a red circle"], "2": ["blue square"]}
    cands = {"1": "a red circle", "2": "green star"}
    mean, per = cider_d(refs, cands)
    # Identical vectors give cosine 1 for n = 1..3 (no 4-grams: norm 0, term 0); length penalty 1.
    assert per["1"] == pytest.approx(10 * 3 / 4)
    assert per["2"] == 0.0 and mean == pytest.approx(3.75)
    # IDF: every n-gram of image 1 occurs in one of the two documents: log(2) - log(1) each.
    assert math.log(2.0) > 0


def test_tokenizer_lowercases_and_drops_punctuation():
    # brackets stay, as PTB's -lrb- -rrb- (coco-caption's removal list has them upper-case only)
    assert tokenize("A Red, circle -- on the (blue) background!") == "a red circle on the -lrb- blue -rrb- background"


PTB_CASES = {  # caption -> what coco-caption's PTBTokenizer (Java) + punctuation removal give
    "A red-orange circle on a blue background.": "a red-orange circle on a blue background",
    "50% off: $5 deal & more #sale @shop": "50 % off $ 5 deal & more #sale @shop",
    "a cat [left] and a dog/wolf": "a cat -lsb- left -rsb- and a dog/wolf",
    "Don't stop, it's a man's hat": "do n't stop it 's a man 's hat",
    "I can't believe they're here!": "i ca n't believe they 're here",
    "\"Quoted\" text -- with dashes... and (parens) {braces}":
        "quoted text with dashes and -lrb- parens -rrb- -lcb- braces -rcb-",
    "It's 5:30 p.m. in the U.S. now": "it 's 5:30 p.m. in the u.s. now",
    "Poetry Salon 2011\u2014Regie Cabico and George W. Holden": "poetry salon 2011 regie cabico and george w. holden",
    "O'Neill Epic 3/2 mm Men's Full Suit, Black": "o'neill epic 3/2 mm men 's full suit black",
    "Us Open - #18 at Chambers Bay<br><b>City:</b>": "us open # 18 at chambers bay <br> <b> city </b>",
}


def test_tokenizer_follows_coco_captions_ptb_tokenizer():
    """The cases were written from the Java tokenizer's output (pycocoevalcap 1.2's jar): clitics
    split, hyphenated and slashed words whole, symbols and brackets as PTB writes them."""
    for caption, expected in PTB_CASES.items():
        assert tokenize(caption) == expected, caption


def test_tokenizer_equals_the_java_tokenizer_where_java_runs():
    import shutil

    if shutil.which("java") is None:
        pytest.skip("java is not installed: pycocoevalcap's PTBTokenizer needs it (the cases above hold its output)")
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    theirs = PTBTokenizer().tokenize({str(i): [{"caption": c}] for i, c in enumerate(PTB_CASES)})
    assert [tokenize(c) for c in PTB_CASES] == [theirs[str(i)][0] for i in range(len(PTB_CASES))]


def test_tokenizer_stays_linear_on_hostile_text():
    """An e-mail rule scanning to the end of every run of [\\w.+-] took 18 s on 100k characters of
    "a+a+..." (quadratic); generated captions are untrusted text too."""
    import time

    started = time.perf_counter()
    for text in ("a+" * 100_000, "-" * 200_000, "a.b-c/d+e@" * 20_000, "don't " * 30_000, "a." + " " * 200_000):
        tokenize(text)
    assert time.perf_counter() - started < 10  # the quadratic version needed minutes
    assert tokenize("Don’t stop, I cannot") == "do n’t stop i can not"
