"""No record is ever pickled in a curate graph: every PCollection that holds records is encoded by
the project's own coders, checked on the pipeline proto of a run with every stage, and records
refuse to be pickled at all (so any undeclared step fails every Beam test loudly)."""

from __future__ import annotations

import copy
import pickle
import typing

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners import pipeline_context
from apache_beam.typehints import typehints

from filters.document import Document, ImageNode, TextNode
from filters.sample import Rejection, RecordPickledError, Sample
from manifests.recipe import parse_recipe
from pipelines.beam.coders import DocumentCoder, RejectionCoder, SampleCoder, Tagged, TaggedCoder
from pipelines.drivers.curate import build_pipeline

PICKLING = {"PickleCoder", "DillCoder", "CloudpickleCoder", "_PickleCoderBase"}
OURS = (SampleCoder, DocumentCoder, RejectionCoder, TaggedCoder)
RECORD_TYPES = (Sample, Document, Rejection, Tagged)


def _all_stages_graph(tiny_clip, tmp_path):
    metadata = tmp_path / "metadata.json"
    metadata.write_text('["circle", "square"]')
    # Every stage: the document stages first (web input), then the pair stages on the pairs they make.
    recipe = parse_recipe({"name": "every-stage", "input": {"kind": "document"}, "stages": [
        {"obelics_nodes": {}}, {"obelics_documents": {}}, {"document_dedup": {}}, {"fetch_images": {}},
        {"documents_to_pairs": {}},
        {"heuristics": {}}, {"clipscore": {"model": tiny_clip, "top_fraction": 0.5}}, {"tmars": {"top_fraction": 0.5}},
        {"semantic_dedup": {}}, {"metaclip": {"metadata": str(metadata), "t": 5}},
        {"grounding": {"detector": {"path": str(tmp_path)}}}]})
    from pipelines.stages import registry

    assert {e.name for e in recipe.stages} == set(registry())  # a new stage must join this graph
    p = beam.Pipeline(options=PipelineOptions(["--runner=DirectRunner"]))
    build_pipeline(p, recipe, [str(tmp_path / "in.warc.gz")], str(tmp_path / "out"))
    return p.to_runner_api(return_context=True)


def _coder_tree(coder) -> list:
    found = [coder]
    for component in coder._get_component_coders() or []:
        found += _coder_tree(component)
    return found


def _mentions_records(hint) -> bool:
    if isinstance(hint, type):
        return issubclass(hint, RECORD_TYPES)
    inner = getattr(hint, "tuple_types", None) or getattr(hint, "union_types", None) or ()
    inner = list(inner) + [getattr(hint, a) for a in ("inner_type", "key_type", "value_type") if hasattr(hint, a)]
    return any(_mentions_records(h) for h in inner) or any(_mentions_records(h) for h in typing.get_args(hint))


def test_no_pickling_coder_anywhere_and_records_use_their_own_coders(tiny_clip, tmp_path):
    proto, context = _all_stages_graph(tiny_clip, tmp_path)
    coders = pipeline_context.PipelineContext(proto.components).coders
    for coder_id in proto.components.coders:
        names = {type(c).__name__ for c in _coder_tree(coders.get_by_id(coder_id))}
        assert not names & PICKLING, f"coder {coder_id} pickles: {names}"
    checked = 0
    for pcoll, pcoll_id in context.pcollections._obj_to_id.items():
        hint = pcoll.element_type
        if hint is None or hint is typehints.Any:
            # An undeclared output of a step that takes records could hold records: Beam would pickle them.
            producer = pcoll.producer
            takes_records = producer and any(i.element_type is not None and _mentions_records(i.element_type)
                                             for i in producer.inputs)
            assert not takes_records, f"{producer.full_label} takes records: declare its output type"
            continue
        if not _mentions_records(hint):
            continue
        tree = _coder_tree(coders.get_by_id(proto.components.pcollections[pcoll_id].coder_id))
        names = [type(c).__name__ for c in tree]
        assert any(isinstance(c, OURS) for c in tree), f"{pcoll.producer.full_label}: {names}"
        assert "FastPrimitivesCoder" not in names, f"{pcoll.producer.full_label} may pickle records: {names}"
        checked += 1
    assert checked > 40  # every stage's record-carrying steps, not a vacuous pass


def test_records_refuse_to_be_pickled_or_copied():
    records = [Sample("k", "s.tar"), Rejection("k", "s.tar", None, "read", "x"), Document("d", "w.warc")]
    for record in records:
        with pytest.raises(RecordPickledError, match="declare the PCollection's type"):
            pickle.dumps(record)
        with pytest.raises(RecordPickledError):
            copy.deepcopy(record)


def test_document_and_tagged_encodings_round_trip():
    doc = Document("page-1", "crawl.warc.gz", "https://example.invalid/a", [
        TextNode("First paragraph.", {"tag": "p"}),
        ImageNode("https://example.invalid/a.jpg", b"\xff\xd8jpeg-bytes", "jpg", "a red circle", {"width": 300}),
        ImageNode("https://example.invalid/b.png", None, None, None),
        TextNode("Last words, ünïcode 🐕.")], {"warc_offset": 1234}, {"lang": "en"})
    assert DocumentCoder().decode(DocumentCoder().encode(doc)) == doc
    assert doc.texts == ["First paragraph.", None, None, "Last words, ünïcode 🐕."]
    assert doc.images == [None, "https://example.invalid/a.jpg", "https://example.invalid/b.png", None]
    coder = TaggedCoder()
    for tagged in (Tagged(doc), Tagged(Sample("k", "s", b"\x00img", "jpg", "cap")), Tagged(value=[3, None, "x"]),
                   Tagged(Rejection("k", "s", None, "read", "r", "d", "document"))):
        assert coder.decode(coder.encode(tagged)) == tagged


def test_rejection_details_carry_no_memory_addresses():
    """PIL's "cannot identify image file <_io.BytesIO object at 0x7f..>" changed on every run, so
    two runs over the same input wrote different rejection tables (and manifest checksums)."""
    from filters.image_checks import read_header

    problem = read_header(b"not an image")
    assert " at 0x" in problem.detail  # PIL's own text
    detail = Rejection("k", "s.tar", None, "heuristics", problem.reason, problem.detail).detail
    assert detail == "UnidentifiedImageError: cannot identify image file <_io.BytesIO object>"
