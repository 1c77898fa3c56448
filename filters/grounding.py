"""GRIT on a batch of image-text pairs: phrases, detection, NMS, referring expressions, renderings.

What RunInference loads per worker (pipelines/stages/grounding.py): spaCy's parser, WordNet's noun
hierarchy and one detector. For each sample: the caption's noun chunks (filters/grounding_phrases.py)
are the detector's queries; boxes above the threshold, normalized to the image as displayed (the one
EXIF-aware decode), go through NMS across all phrases; grounded chunks grow into referring
expressions carrying their boxes; the sample gets `grounding` (and GRIT's `noun_chunks` /
`ref_exps` columns, and the renderings the recipe asks for) or, with fewer than
`min_grounded_phrases` grounded chunks in filter mode, becomes a `no_grounded_phrase` rejection.
The config object is duck-typed (GroundingConfig).
"""

from __future__ import annotations

from typing import Any

from filters.boxes import nms, normalized
from filters.detectors import DEFAULT_THRESHOLDS, load_detector
from filters.grounding_phrases import Phrase, noun_chunks, referring_expressions
from filters.grounding_render import kosmos2, paligemma
from filters.image_decode import decode_for_model
from filters.sample import Rejection, Sample

STAGE = "grounding"
GROUNDING = "grounding"  # KEY.json: [{phrase, start, end, kind, boxes}]
NOUN_CHUNKS, REF_EXPS = "noun_chunks", "ref_exps"  # GRIT's columns: [[start, end, x1, y1, x2, y2, score], ...]
RENDERINGS = {"kosmos2": "grounding_kosmos2", "paligemma": "grounding_paligemma"}  # annotation per rendering


class GroundingAnnotator:
    def __init__(self, config: Any):
        import spacy

        from filters.wordnet_nouns import wordnet_nouns

        self.config = config
        # ner is not needed for noun chunks; the parser and the lemmatizer are.
        self.nlp = spacy.load(config.spacy_model, exclude=["ner"])
        self.is_abstract = wordnet_nouns(config.wordnet_dir).is_abstract if config.drop_abstract else (lambda _: False)
        self.stop_nouns = frozenset(w.lower() for w in config.stop_nouns)
        detector = config.detector
        self.detector = load_detector(detector.path, detector.device, detector.adapter)
        family = getattr(self.detector, "family", "")
        self.threshold = config.box_threshold if config.box_threshold is not None else DEFAULT_THRESHOLDS.get(family, 0.3)

    def process_batch(self, samples: list[Sample]) -> list[Sample | Rejection]:
        outcomes: list[Sample | Rejection | None] = [None] * len(samples)
        work = []  # (index, sample, image, chunks)
        docs = self.nlp.pipe([s.caption or "" for s in samples])
        for i, (sample, doc) in enumerate(zip(samples, docs)):
            image = decode_for_model(sample, STAGE, self.config.max_pixels)
            if isinstance(image, Rejection):
                outcomes[i] = image
                continue
            if max(image.size) > self.config.max_side:  # boxes are normalized by the size the detector saw
                image.thumbnail((self.config.max_side, self.config.max_side))
            chunks = noun_chunks(doc, self.is_abstract, self.stop_nouns)[: self.config.max_phrases]
            work.append((i, sample, image, chunks))
        found = self.detector.detect([w[2] for w in work], [[c.text for c, _ in w[3]] for w in work], self.threshold)
        for (i, sample, image, chunks), per_query in zip(work, found):
            outcomes[i] = self._annotate(sample, image, chunks, per_query)
        return [o for o in outcomes if o is not None]

    def _annotate(self, sample: Sample, image, chunks: list[tuple[Phrase, Any]], per_query) -> Sample | Rejection:
        width, height = image.size
        boxes = [[b for b in (normalized(box[:4], box[4], width, height) for box in query) if b is not None]
                 for query in per_query]
        for (chunk, _span), kept in zip(chunks, nms(boxes, self.config.nms_iou)):
            chunk.boxes = sorted(kept, key=lambda b: -b[4])
        grounded = [(c, span) for c, span in chunks if c.boxes]
        refs = referring_expressions(grounded, sample.caption or "")
        if self.config.mode == "filter" and len(grounded) < self.config.min_grounded_phrases:
            return Rejection.of(sample, STAGE, "no_grounded_phrase",
                                f"{len(grounded)} of {len(chunks)} phrases grounded (at least "
                                f"{self.config.min_grounded_phrases} wanted)")
        phrases = [c for c, _ in grounded] + refs
        sample.annotations[GROUNDING] = [p.as_json() for p in phrases]
        sample.annotations[NOUN_CHUNKS] = _grit_rows([c for c, _ in grounded])
        sample.annotations[REF_EXPS] = _grit_rows(refs)
        caption = sample.caption or ""
        if "kosmos2" in self.config.renderings:
            sample.annotations[RENDERINGS["kosmos2"]] = kosmos2(caption, phrases)
        if "paligemma" in self.config.renderings:
            sample.annotations[RENDERINGS["paligemma"]] = paligemma(phrases)
        return sample


def _grit_rows(phrases: list[Phrase]) -> list[list[float]]:
    return [[p.start, p.end, *(round(v, 4) for v in box)] for p in phrases for box in p.boxes]
