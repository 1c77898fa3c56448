"""Open-vocabulary detectors behind one interface: images and text queries in, boxes per query out.

`load_detector(path, device)` reads the family from the model's own config (`model_type`: owlvit,
owlv2, grounding-dino) and loads it with transformers' Auto classes from a local directory or a hub
id, offline-first. Weights are never random: a directory without weight files, or a hub id that
cannot be had, raises DetectorError naming what is missing, before any sample is read (the stage's
preflight calls `check_detector`). Other detectors plug in as `module:Class` adapters with the same
`detect` method (tests use a colour-segmentation one to check boxes end to end).

`detect(images, queries, threshold)` -> per image, per query, a list of (x1, y1, x2, y2, score) in
pixels of the image as given (displayed orientation: the caller decodes with EXIF applied).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

PixelBox = tuple[float, float, float, float, float]
FAMILIES = ("owlvit", "owlv2", "grounding-dino")
# Score thresholds that suit each family's calibration (the model cards' examples); GRIT used 0.65 with GLIP.
DEFAULT_THRESHOLDS = {"owlvit": 0.1, "owlv2": 0.2, "grounding-dino": 0.35}
_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json")


class DetectorError(RuntimeError):
    """The detector cannot be loaded; the message names the key and how to supply the model."""


class Detector(Protocol):
    family: str

    def detect(self, images: list, queries: list[list[str]], threshold: float) -> list[list[list[PixelBox]]]:
        ...


@dataclass(frozen=True)
class DetectorIdentity:
    family: str
    path: str
    files_sha256: str | None


def check_detector(path: str, adapter: str | None = None) -> DetectorIdentity:
    """Driver-side: the model is there, with weights, of a known family; nothing is built."""
    if adapter:
        _adapter_class(adapter)
        return DetectorIdentity(f"adapter:{adapter}", path, None)
    config = _config(path)
    family = config.model_type
    if family not in FAMILIES:
        raise DetectorError(f"grounding.detector.path {path}: model_type {family!r} is not a supported detector "
                            f"({', '.join(FAMILIES)})")
    local = Path(path)
    if local.is_dir():
        if not any((local / name).is_file() for name in _WEIGHTS):
            raise DetectorError(f"grounding.detector.path {path} holds no weights ({' or '.join(_WEIGHTS[:2])}); "
                                "vlcurate never runs a detector with random weights")
        from filters.model_files import directory_sha256

        return DetectorIdentity(family, str(local), directory_sha256(local))
    return DetectorIdentity(family, path, None)


def _config(path: str):
    from transformers import AutoConfig

    local = Path(path).expanduser()
    if (local.is_absolute() or path.startswith((".", "~"))) and not local.is_dir():
        # A path, not a hub id: say so at once instead of asking the hub for a repository of that name.
        raise DetectorError(f"grounding.detector.path {path!r} cannot be loaded: no such directory")
    try:
        return AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise DetectorError(f"grounding.detector.path {path!r} cannot be loaded: {str(err).splitlines()[0]}; "
                            "give a local directory (save_pretrained) or a hub id that is reachable or cached "
                            "(an id downloads once, with network access and HF_HUB_OFFLINE unset, then stays "
                            "in the hub cache)") from None


def _adapter_class(adapter: str):
    module, _, name = adapter.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise DetectorError(f"grounding.detector.adapter {adapter!r}: {err}") from None


def load_detector(path: str, device: str = "cpu", adapter: str | None = None) -> Detector:
    if adapter:
        return _adapter_class(adapter)(path, device)
    identity = check_detector(path)
    return TransformersDetector(path, identity.family, device)


class TransformersDetector:
    """OWL-ViT, OWLv2 and Grounding DINO through AutoProcessor / AutoModelForZeroShotObjectDetection."""

    def __init__(self, path: str, family: str, device: str = "cpu"):
        import torch
        from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

        self.family, self.device = family, device
        self.processor = AutoProcessor.from_pretrained(path)
        self.model = AutoModelForZeroShotObjectDetection.from_pretrained(path).to(device).eval()
        self._torch = torch

    def detect(self, images: list, queries: list[list[str]], threshold: float) -> list[list[list[PixelBox]]]:
        if not images:
            return []
        if self.family == "grounding-dino":
            return [self._detect_dino(image, q, threshold) for image, q in zip(images, queries)]
        # OWL models take the same number of queries per image: pad with a query nobody asked for.
        width = max(1, max(len(q) for q in queries))
        padded = [list(q) + [" "] * (width - len(q)) for q in queries]
        inputs = self.processor(text=padded, images=images, return_tensors="pt", padding="max_length",
                                truncation=True).to(self.device)
        with self._torch.inference_mode():
            outputs = self.model(**inputs)
        # OWLv2 pads every image to a square before resizing: its boxes are in the padded frame.
        sizes = [(max(im.size), max(im.size)) if self.family == "owlv2" else (im.size[1], im.size[0]) for im in images]
        results = self.processor.post_process_grounded_object_detection(
            outputs, threshold=threshold, target_sizes=sizes)
        return [_per_query(r, len(q)) for r, q in zip(results, queries)]

    def _detect_dino(self, image, queries: list[str], threshold: float) -> list[list[PixelBox]]:
        """Grounding DINO scores boxes against text tokens: the queries go in as one prompt ("a dog. a
        cat."), and a box belongs to the query whose tokens it matches best (the highest sigmoid over
        that query's token span), kept when that score passes the threshold. Decided from the logits,
        not from post-processing's text labels, which name token runs rather than queries."""
        if not queries:
            return []
        names = [" ".join(q.lower().replace(".", " ").split()) or "thing" for q in queries]
        inputs = self.processor(images=image, text=". ".join(names) + ".", return_tensors="pt").to(self.device)
        with self._torch.inference_mode():
            outputs = self.model(**inputs)
        spans = _query_spans(inputs["input_ids"][0].tolist(), self.processor.tokenizer, len(names))
        probs = outputs.logits[0].sigmoid()  # (boxes, text tokens)
        width, height = image.size
        found: list[list[PixelBox]] = [[] for _ in queries]
        per_query = self._torch.stack([probs[:, a:b].max(dim=1).values for a, b in spans], dim=1)  # (boxes, queries)
        scores, best = per_query.max(dim=1)
        for (cx, cy, w, h), score, query in zip(outputs.pred_boxes[0].tolist(), scores.tolist(), best.tolist()):
            if score > threshold:
                found[query].append(((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width,
                                     (cy + h / 2) * height, float(score)))
        return found


def _query_spans(ids: list[int], tokenizer, count: int) -> list[tuple[int, int]]:
    """Token ranges of each query in a "q1. q2." prompt: between [CLS] and the first ".", and so on."""
    dot = tokenizer.convert_tokens_to_ids(".")
    ends = [i for i, t in enumerate(ids) if t == dot][:count]
    starts = [1] + [e + 1 for e in ends[:-1]]
    spans = [(a, max(a + 1, b)) for a, b in zip(starts, ends)]
    while len(spans) < count:  # a prompt cut by the text length limit: later queries get no tokens
        spans.append((len(ids) - 1, len(ids)))
    return spans


def _per_query(result: dict[str, Any], count: int) -> list[list[PixelBox]]:
    found: list[list[PixelBox]] = [[] for _ in range(count)]
    for label, box, score in zip(result["labels"].tolist(), result["boxes"].tolist(), result["scores"].tolist()):
        if 0 <= label < count:  # padding queries answer nothing
            found[label].append((*map(float, box), float(score)))
    return found
