"""Language identification with fastText lid.176 (the model DataComp's basic filter uses)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class LanguageGuess:
    label: str  # ISO code, e.g. "en"
    score: float


class LanguageIdentifier:
    """Top-1 fastText prediction per caption; the model loads once per instance."""

    def __init__(self, model_path: str | Path):
        import fasttext

        # fastText prints a deprecation warning on every load_model; it is noise here.
        fasttext.FastText.eprint = lambda *args, **kwargs: None
        self.model_path = str(model_path)
        self._model = fasttext.load_model(self.model_path)

    def predict(self, captions: list[str]) -> list[LanguageGuess]:
        if not captions:
            return []
        # fastText treats "\n" as the end of input; DataComp replaces newlines by spaces.
        texts = [c.replace("\n", " ").replace("\r", " ") for c in captions]
        labels, scores = self._model.predict(texts, k=1)
        return [
            LanguageGuess(label[0].removeprefix("__label__"), min(float(score[0]), 1.0))
            for label, score in zip(labels, scores)
        ]
