"""Perplexity under a KenLM language model: OBELICS' last document rule (<= 1500 with the
edugp/kenlm Wikipedia models). No model ships with vlcurate and none can be downloaded for you:
the rule runs only when the recipe names a model file, and says what is missing otherwise.

Perplexity as OBELICS computes it (web_document_filtering.py:368-432): per line, the model's
log10 score; pp = 10 ** (-sum(scores) / sum(words per line + 1)). Text is normalized the way
they do before scoring: digits to 0, whitespace collapsed (without their SentencePiece step: a
model trained on whitespace tokens scores whitespace tokens).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

_DIGITS = re.compile(r"\d")
_SPACES = re.compile(r"[^\S\n]+")


class PerplexityRule:
    def __init__(self, model_path: str):
        if not Path(model_path).is_file():
            raise FileNotFoundError(f"perplexity_model_path {model_path} does not exist (a KenLM .arpa or .bin file)")
        try:
            import kenlm
        except ImportError:
            raise ValueError("perplexity_model_path is set but the kenlm package is not installed: "
                             "`pip install kenlm` (it builds from source), or remove the key") from None
        self.model = kenlm.Model(model_path)

    def perplexity(self, text: str) -> float:
        score, tokens = 0.0, 0
        for line in _DIGITS.sub("0", text).split("\n"):
            line = _SPACES.sub(" ", line).strip()
            if line:
                score += self.model.score(line)
                tokens += len(line.split()) + 1
        return 10 ** (-score / tokens) if tokens else 0.0

    def failure(self, doc: Any, max_perplexity: float) -> tuple[str, str] | None:
        from filters.obelics_rules import document_text

        value = round(self.perplexity(document_text(doc)), 1)
        doc.annotations["perplexity"] = value
        if value > max_perplexity:
            return "document_perplexity_too_high", f"{value} > {max_perplexity}"
        return None
