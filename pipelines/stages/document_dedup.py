"""Document dedup on Beam (filters/document_dedup.py): the same URL once, template paragraphs per
domain, ubiquitous image URLs. Each rule is a group step over light values (URL -> documents,
(domain, paragraph fingerprint) -> keys, image URL -> keys); what a group decides travels back to
its documents by a typed join on the key, so no step holds more than one group.
"""

from __future__ import annotations

import apache_beam as beam
from pydantic import Field

from filters.document import Document
from filters.document_dedup import (emptied, image_urls, normalize_url, paragraph_fingerprints,
                                    remove_nodes)
from filters.records import DOCUMENT, edit
from filters.sample import Rejection
from manifests.schema import Strict
from pipelines.beam.join import join_with_values, unpack
from pipelines.beam.routing import StageOutputs, all_rejections, all_tallies, split
from pipelines.stages.spec import StageSpec

STAGE = "document_dedup"
_KEYED_DOC = beam.typehints.Tuple[str, Document]
_KEYED_STR = beam.typehints.Tuple[str, str]
_REMOVAL = beam.typehints.Tuple[str, beam.typehints.List[str]]  # key -> ["p", fingerprint] or ["i", url]


class DocumentDedupConfig(Strict):
    """OBELICS' dedup: build_obelics/06 (image URLs), 08 (page URLs), 09 (paragraphs per domain)."""

    url: bool = Field(True, description="documents with the same normalized URL: the smallest key stays")
    paragraph_min_documents: int | None = Field(
        3, ge=2, description="a paragraph in this many documents of one domain is removed from all (null: off)")
    image_max_documents: int | None = Field(
        10, ge=1, description="an image URL in more documents than this is removed from all (null: off)")
    min_text_nodes: int = Field(1, ge=0, description="documents left with fewer paragraphs are rejected")
    min_images: int = Field(1, ge=0, description="documents left with fewer images are rejected")


def _keep_one(item: tuple[str, list[Document]]):
    _url, copies = item
    ordered = sorted(copies, key=lambda d: (d.key, d.source))
    return [ordered[0], *(Rejection.of(d, STAGE, "duplicate_url", f"kept {ordered[0].key}") for d in ordered[1:])]


def _paragraphs_by_domain(doc: Document):
    domain = doc.meta.get("domain")
    if domain:
        for fingerprint in paragraph_fingerprints(doc):
            yield f"{domain}\x00{fingerprint}", doc.key


def _images(doc: Document):
    for url in image_urls(doc):
        yield url, doc.key


def _flag(item: tuple[str, list[str]], tag: str, at_least: int):
    group, keys = item
    keys = set(keys)
    if len(keys) >= at_least:
        value = group.rsplit("\x00", 1)[-1] if tag == "p" else group
        for key in sorted(keys):
            yield key, [tag, value]


def _apply(item, min_text_nodes: int, min_images: int):
    _key, group = item
    docs, removals = unpack(group)
    paragraphs = {v for t, v in removals if t == "p"}
    images = {v for t, v in removals if t == "i"}
    out = []
    for doc in docs:
        edits = remove_nodes(doc, paragraphs, images) if removals else {}
        out.extend(edit(reason, n) for reason, n in sorted(edits.items()))
        problem = emptied(doc, min_text_nodes, min_images)
        out.append(Rejection.of(doc, STAGE, *problem) if problem else doc)
    return out


class DocumentDedupStage(beam.PTransform):
    def __init__(self, config: DocumentDedupConfig):
        super().__init__()
        self.config = config

    def expand(self, docs):
        c = self.config
        rejected, tallies = [], []
        if c.url:
            by_url = (docs
                      | "ByUrl" >> beam.Map(lambda d: (normalize_url(d.url) or f"\x00{d.key}", d))
                      .with_output_types(_KEYED_DOC)
                      | "GroupUrls" >> beam.GroupByKey().with_output_types(
                          beam.typehints.Tuple[str, beam.typehints.Iterable[Document]]))
            urls = split(by_url, "KeepOnePerUrl", _keep_one, stage=STAGE, kind=Document)
            docs, rejected, tallies = urls.kept, [urls.rejected], [urls.tallies]
        removals = []
        if c.paragraph_min_documents is not None:
            removals.append(self._flagged(docs, "Paragraphs", _paragraphs_by_domain, "p", c.paragraph_min_documents))
        if c.image_max_documents is not None:
            removals.append(self._flagged(docs, "Images", _images, "i", c.image_max_documents + 1))
        if not removals:
            removals.append(docs.pipeline | "NoRemovals" >> beam.Create([]).with_output_types(_REMOVAL))
        flagged = tuple(removals) | "AllRemovals" >> beam.Flatten().with_output_types(_REMOVAL)
        by_key = docs | "ByKey" >> beam.Map(lambda d: (d.key, d)).with_output_types(_KEYED_DOC)
        applied = split(join_with_values("Join", by_key, flagged), "Remove", _apply, c.min_text_nodes, c.min_images,
                        stage=STAGE, kind=Document)
        return StageOutputs(applied.kept, all_rejections("Rejected", *rejected, applied.rejected),
                            all_tallies("Tallies", *tallies, applied.tallies))

    @staticmethod
    def _flagged(docs, label: str, values, tag: str, at_least: int):
        return (docs
                | f"{label}Keys" >> beam.FlatMap(values).with_output_types(_KEYED_STR)
                | f"Group{label}" >> beam.GroupByKey().with_output_types(
                    beam.typehints.Tuple[str, beam.typehints.Iterable[str]])
                | f"Flag{label}" >> beam.FlatMap(_flag, tag, at_least).with_output_types(_REMOVAL))


SPEC = StageSpec(
    name=STAGE,
    summary="OBELICS dedup: one document per URL, paragraphs repeated across a domain's documents, "
            "image URLs in too many documents",
    config=DocumentDedupConfig,
    build=lambda config, context: DocumentDedupStage(config),
    accepts=(DOCUMENT,),
    produces=DOCUMENT,
    reasons=("duplicate_url", "no_text_left", "no_image_left"),
    edits=("paragraph_repeated_in_domain", "image_url_too_common"),
)
