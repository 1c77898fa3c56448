"""T-MARS (Maini et al. 2023): score the image with its text masked, so captions that only spell
the text in the image (OCR-like pairs) lose the score that text gave them.

Per sample: decode, detect text regions, fill them (filters/text_regions.py), record the text-area
fraction, then the CLIPScore of the masked image against the caption. Without a CLIP model only the
text fraction is recorded (the cheaper rule). Embeddings of a preceding clipscore stage (same model,
checked by the recipe) are reused, and an image with no detected text is not re-embedded: its
masked score is its score.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from filters.clip_model import ClipSpec
from filters.clipscore import IMAGE_VECTOR, SCORE, TEXT_VECTOR, ClipScorer, non_finite_as_rejection
from filters.image_decode import DEFAULT_MAX_PIXELS, decode_for_model
from filters.sample import Rejection, Sample
from filters.text_regions import TextRegionDetector, TextRegionMasker

STAGE = "tmars"
MASKED_SCORE = "tmars_masked_score"
TEXT_FRACTION = "tmars_text_fraction"
REGIONS = "tmars_text_regions"


class TmarsScorer:
    def __init__(self, *, spec: ClipSpec | None, detector_side: int = 256, box_threshold: float = 0.5,
                 dilate_px: int = 2, ring_px: int = 4, max_text_fraction: float | None = None,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS, threads: int | None = None):
        self.detector = TextRegionDetector(detector_side, box_threshold, threads)
        self.masker = TextRegionMasker(dilate_px, ring_px)
        self.clip = ClipScorer(spec) if spec is not None else None
        self.max_text_fraction = max_text_fraction
        self.max_pixels = max_pixels

    def process_batch(self, samples: list[Sample]) -> list[Sample | Rejection]:
        outcomes: list[Sample | Rejection] = []
        to_score: list[tuple[Sample, np.ndarray, np.ndarray | None]] = []  # sample, original, masked (or None)
        for sample in samples:
            outcome = self._mask_one(sample)
            if isinstance(outcome, Rejection):
                outcomes.append(outcome)
                continue
            outcomes.append(sample)
            if self.clip is not None:
                to_score.append(outcome)
        if to_score:
            self._score(to_score)
        return [non_finite_as_rejection(o, STAGE, (SCORE, MASKED_SCORE)) for o in outcomes]

    def _mask_one(self, sample: Sample):
        image = decode_for_model(sample, STAGE, self.max_pixels, need_caption=self.clip is not None)
        if isinstance(image, Rejection):
            return image
        pixels = np.asarray(image)
        masked = self.masker.mask(pixels, self.detector.detect(pixels))
        sample.annotations[TEXT_FRACTION] = round(masked.text_fraction, 6)
        sample.annotations[REGIONS] = masked.regions
        if self.max_text_fraction is not None and masked.text_fraction > self.max_text_fraction:
            return Rejection.of(sample, STAGE, "text_area_too_large",
                                f"{masked.text_fraction:.4f} > {self.max_text_fraction}")
        return sample, pixels, (masked.pixels if masked.regions else None)

    def _score(self, items: list[tuple[Sample, np.ndarray, np.ndarray | None]]) -> None:
        clip = self.clip
        # Originals: reuse a preceding clipscore stage's embeddings, else embed them now.
        fresh = [(s, px) for s, px, _ in items if IMAGE_VECTOR not in s.vectors or TEXT_VECTOR not in s.vectors]
        if fresh:
            images = clip.embed_images([Image.fromarray(px) for _, px in fresh])
            texts = clip.embed_texts([s.caption for s, _ in fresh])
            for (sample, _), img, txt in zip(fresh, images, texts):
                sample.set_vector(IMAGE_VECTOR, img)
                sample.set_vector(TEXT_VECTOR, txt)
                sample.annotations[SCORE] = float(np.dot(img, txt))
        with_text = [(s, m) for s, _, m in items if m is not None]
        masked_embeddings = clip.embed_images([Image.fromarray(m) for _, m in with_text])
        masked_by_key = {id(s): e for (s, _), e in zip(with_text, masked_embeddings)}
        for sample, _, _ in items:
            text = sample.get_vector(TEXT_VECTOR)
            if id(sample) in masked_by_key:
                sample.annotations[MASKED_SCORE] = float(np.dot(masked_by_key[id(sample)], text))
            else:
                sample.annotations[MASKED_SCORE] = sample.annotations[SCORE]
