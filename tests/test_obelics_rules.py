"""OBELICS' text metrics and node/document rules, one by one, on hand-written paragraphs."""

from __future__ import annotations

import pytest

from filters.document import Document, ImageNode, TextNode
from filters.obelics_rules import WordLists, document_failure, filter_nodes, text_failure
from filters.text_quality import (char_repetition_ratio, punctuation_ratio, special_character_ratio, text_stats,
                                  word_repetition_ratio, words_of)
from pipelines.stages.obelics_documents import DocumentRulesConfig
from pipelines.stages.obelics_nodes import NodeRulesConfig

GOOD = ("The garden was quiet in the morning, and the old gardener walked slowly between the rows of roses "
        "that he had planted with his daughter many years before.")


@pytest.fixture(scope="module")
def words():
    return WordLists.load(NodeRulesConfig())


def failure(text, words, config=None):
    config = config or NodeRulesConfig()
    stats = text_stats(text, words.stop, words.flagged, words.common, config.punctuation_min_words)
    return text_failure(stats, config)


def test_words_are_split_lowered_and_stripped_as_obelics_does():
    assert words_of("Hello, WORLD!  2019 don't\t(a.k.a)\nend.") == ["hello", "world", "don't", "a.k.a", "end"]


def test_metric_definitions():
    # 10 distinct 10-grams (19 or 20 each): the top floor(sqrt(10)) = 3 of them hold 3/10 of all
    assert char_repetition_ratio("abcdefghij" * 20) == pytest.approx(3 * 19 / 191, abs=0.01)
    assert char_repetition_ratio("short") == 0.0
    assert word_repetition_ratio("a b c d e a b c d e".split()) == pytest.approx(2 / 6)
    assert word_repetition_ratio("one two three four five six".split()) == 0.0
    assert special_character_ratio("ab!! 12") == pytest.approx(5 / 7)
    assert punctuation_ratio("a, b.", 0) == pytest.approx(2 / 4)
    assert punctuation_ratio("few words", 12) == 1.0  # too short to judge


def test_a_good_paragraph_passes(words):
    assert failure(GOOD, words) is None


@pytest.mark.parametrize("text, reason", [
    ("Too short here", "too_few_words"),
    (" ".join(["word"] * 1001), "too_many_words"),
    ("buy now buy now buy now buy now buy now buy now buy now buy now", "char_repetition"),
    ("§§§ ### @@@ the %%% *** cat ~~~ ^^^ sat +++ on === the <<< mat >>> |||", "special_characters"),
    ("Purple elephants juggle seventeen orange bicycles beneath shimmering crystalline mountains yesterday",
     "few_stop_words"),
])
def test_each_node_rule_alone(words, text, reason):
    assert failure(text, words) == reason


def test_word_repetition_flagged_and_common_words(words):
    config = NodeRulesConfig(max_char_repetition=1.0)
    looped = "the cat sat on the mat and " * 6
    assert failure(looped, words, config) == "word_repetition"
    flagged = GOOD + " porn"
    assert failure(flagged, words) == "flagged_words"
    rare = ("The zyxquil and the vorplex were in the flumbrant of the snarfwidget, and it was with the quonzle "
            "that they were")
    assert failure(rare, words, NodeRulesConfig(min_stop_words=0.0)) == "few_common_words"


def test_punctuation_rule_applies_from_twelve_tokens(words):
    unpunctuated = ("the garden was quiet in the morning and the old gardener walked slowly between the rows of "
                    "roses that he had planted with his daughter many years before")
    assert failure(unpunctuated, words, NodeRulesConfig(min_punctuation=0.01)) == "low_punctuation"
    assert failure("the garden was quiet in the morning", words, NodeRulesConfig(min_punctuation=0.5)) is None


def test_node_filter_removes_parts_and_counts_each(words):
    doc = Document("k", "s", "https://example.org/", nodes=[
        TextNode(GOOD), TextNode("Share this"), ImageNode("https://example.org/Logo.png"),
        ImageNode("https://example.org/photo.jpg"), ImageNode("https://example.org/photo.jpg"), TextNode(GOOD)])
    outcome = filter_nodes(doc, NodeRulesConfig(), words)
    assert outcome.edits == {"paragraph_too_few_words": 1, "image_url_banned": 1, "image_repeated_in_document": 1}
    assert [type(n).__name__ for n in doc.nodes] == ["TextNode", "ImageNode", "TextNode"]


def test_document_rules(words):
    config = DocumentRulesConfig(languages=())
    doc = lambda *nodes: Document("k", "s", "https://example.org/", nodes=list(nodes))  # noqa: E731
    image = ImageNode("https://example.org/a.jpg")
    assert document_failure(doc(TextNode(GOOD)), config, words)[0] == "document_too_few_images"
    many = [ImageNode(f"https://example.org/{i}.jpg") for i in range(31)]
    assert document_failure(doc(TextNode(GOOD), *many), config, words)[0] == "document_too_many_images"
    assert document_failure(doc(TextNode("Just five words here now."), image), config, words)[0] == \
        "document_too_few_words"
    other = "Later that day, it rained over the hills, and the children ran home through the wet fields."
    ok = doc(TextNode(GOOD), image, TextNode(other))
    assert document_failure(ok, config, words) is None and ok.annotations["doc_words"] == len(words_of(GOOD + " " + other))


def test_document_language_rule(words):
    from filters.language import LanguageIdentifier
    from filters.model_files import default_lid_model_path

    lid = LanguageIdentifier(default_lid_model_path())
    german = ("Der Garten war am Morgen ruhig, und der alte Gärtner ging langsam zwischen den Reihen der Rosen, "
              "die er vor vielen Jahren mit seiner Tochter gepflanzt hatte.")
    config = DocumentRulesConfig(min_common_words=0.0, min_stop_words=0.0)
    image = ImageNode("https://example.org/a.jpg")
    failed = document_failure(Document("k", "s", None, nodes=[TextNode(german), image]), config, words, lid)
    assert failed[0] == "document_language_not_allowed" and failed[1].startswith("de")
    english = Document("k", "s", None, nodes=[TextNode(GOOD), image])
    assert document_failure(english, config, words, lid) is None
    assert english.annotations["language"] == "en" and english.annotations["language_score"] >= 0.8


def test_perplexity_rule_needs_a_model_and_says_so(tmp_path):
    """Off by default; asked for without a model (or without kenlm), the run stops in preflight with
    one clear line naming the key, never a silent skip."""
    from manifests.recipe import parse_recipe
    from pipelines.drivers.curate import CurateError, preflight_stages

    def recipe(path):
        return parse_recipe({"name": "t", "input": {"kind": "document"},
                             "stages": [{"obelics_documents": {"perplexity_model_path": str(path)}}]})

    with pytest.raises(CurateError, match="perplexity_model_path .*missing.arpa does not exist"):
        preflight_stages(recipe(tmp_path / "missing.arpa"))
    model = tmp_path / "en.arpa"
    model.write_text(TINY_ARPA)
    try:
        import kenlm  # noqa: F401
    except ImportError:
        with pytest.raises(CurateError, match="kenlm package is not installed"):
            preflight_stages(recipe(model))
    else:
        assert preflight_stages(recipe(model)).models[-1]["name"] == "kenlm"


# A bigram model written by hand (KenLM needs at least bigrams): log10 probabilities and backoffs.
TINY_ARPA = """\\data\\
ngram 1=7
ngram 2=2

\\1-grams:
-0.5\t<s>\t-0.3
-0.5\t</s>\t0
-3.0\t<unk>\t0
-0.8\tthe\t-0.3
-1.0\triver\t-0.3
-1.0\trose\t-0.3
-1.2\tslowly\t-0.3

\\2-grams:
-0.2\t<s> the
-0.2\tthe river

\\end\\
"""


def test_perplexity_is_obelics_formula(tmp_path):
    pytest.importorskip("kenlm", reason="kenlm is optional (pip install kenlm builds it from source)")
    from filters.perplexity import PerplexityRule

    model = tmp_path / "en.arpa"
    model.write_text(TINY_ARPA)
    rule = PerplexityRule(str(model))
    # <s> the: -0.2; the river: -0.2; river rose: backoff -0.3 + -1.0; rose slowly: -0.3 + -1.2;
    # slowly </s>: -0.3 + -0.5. Sum -4.0 over 4 words + 1: pp = 10 ** (4 / 5).
    assert rule.perplexity("the river rose slowly") == pytest.approx(10 ** 0.8)
    doc = Document("k", "s", None, nodes=[TextNode("zebra quantum fox 1999")])
    assert rule.failure(doc, 100)[0] == "document_perplexity_too_high" and doc.annotations["perplexity"] > 100


def test_word_lists_and_character_classes_are_obelics_own(words):
    """The stop words are OBELICS' published 301 (spaCy's list differs by a third); the special
    characters include those of their hand-kept list that Unicode's classes miss; a text with no
    token has punctuation ratio 0, as in their code."""
    assert len(words.stop) == 301 and {"b/c", "amidst", "y'all", "the"} <= words.stop
    assert not {"fifteen", "afterwards", "'ll"} & words.stop  # spaCy's, not OBELICS'
    assert special_character_ratio("\u200b\ufeff²½ab") == 4 / 6
    assert words_of("\u200bword²") == ["word"]
    assert punctuation_ratio("") == 0.0 and punctuation_ratio("--") == 0.0
    assert punctuation_ratio("one two.", min_tokens=12) == 1.0
