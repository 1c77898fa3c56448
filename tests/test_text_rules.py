"""Caption cleanup, word/char counting and boilerplate, as pure functions."""

import pytest

from filters.caption_rules import BoilerplateMatcher, count_words, has_enough_chars, has_enough_words
from filters.text_cleanup import clean_caption, repair_text


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("<b>Red</b> circle &amp; square", "Red circle & square"),
        ("&lt;p&gt;escaped markup&lt;/p&gt; stays out", "escaped markup stays out"),
        ("double &amp;amp; encoded", "double & encoded"),
        ("line\nbreaks\t and   spaces ", "line breaks and spaces"),
        ("zero\u200bwidth joiner", "zerowidth joiner"),
        ("a < b and 3 > 2", "a < b and 3 > 2"),  # comparisons are not tags
        ("<!-- tracking --> a photo of a cat", "a photo of a cat"),
        ('<img src="x.jpg" alt="nested"> a dog', "a dog"),
        ("<script>alert(1)</script> a red car", "a red car"),  # code is not caption text
        ("a <STYLE>p {color: red}</style>blue &lt;script&gt;x()&lt;/script&gt; sky", "a blue sky"),
        ("İ <script src=x> an unclosed script runs to the end", "İ"),
        ("I <3 scripts", "I <3 scripts"),
    ],
)
def test_clean_caption(raw, clean):
    assert clean_caption(raw) == clean


@pytest.mark.parametrize(
    ("broken", "repaired"),
    [
        ("a cafÃ© in Paris", "a café in Paris"),  # UTF-8 read as windows-1252
        ("The Mona Lisa doesnâ€™t have eyebrows", "The Mona Lisa doesn’t have eyebrows"),  # the quote stays curly
        ("ÐŸÑ€Ð¸Ð²ÐµÑ‚ Ð¼Ð¸Ñ€", "Привет мир"),
        ("l'Ã©tÃ© Ã  Paris <b>x</b>", "l'été à Paris <b>x</b>"),  # markup is clean_caption's business
        ("red\x1b[31m text", "red text"),  # a terminal escape
        ("cafe\u0301 au lait", "café au lait"),  # NFC: one spelling of é
    ],
)
def test_repair_text_fixes_mojibake(broken, repaired):
    assert repair_text(broken) == repaired


@pytest.mark.parametrize("text", ["a plain ascii caption", "“curly quotes” and ‘single’ ones", "ＡＢＣ full width",
                                  "ﬁne ligature", "caf&eacute; &amp; entities", "naïve café, 東京", "Ελληνικά",
                                  "two\r\nlines, tab\tand\u00a0no-break space"])
def test_repair_text_leaves_intact_text_alone(text):
    assert repair_text(text) == text


def test_word_and_char_rules_match_datacomp_thresholds():
    # DataComp keeps captions with > 2 words and > 5 characters: min_words=3, min_chars=6.
    assert count_words("a  red\tcircle\n") == 3
    assert has_enough_words("a red circle", 3) and not has_enough_words("red circle", 3)
    assert has_enough_chars("abcdef", 6) and not has_enough_chars("a b c", 6)


@pytest.mark.parametrize("caption", ["IMG_2041.JPG", "photo.png", "DSC_0042 copy", "Click here to enlarge the view",
                                     "image", "Untitled", "no image available for this item"])
def test_boilerplate_matches(caption):
    assert BoilerplateMatcher().match(caption) is not None


@pytest.mark.parametrize("caption", ["a photo of a red barn in the snow", "image of a dog running on a beach",
                                     "logo design for a coffee shop"])
def test_boilerplate_spares_real_captions(caption):
    assert BoilerplateMatcher().match(caption) is None


def test_boilerplate_with_no_patterns_matches_nothing():
    assert BoilerplateMatcher(()).match("IMG_0001.jpg") is None
