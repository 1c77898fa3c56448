"""CLIPScore: cosine similarity of an open_clip model's image and caption embeddings.

`ClipScorer.score_samples` takes a batch of Samples and returns, in order, each Sample annotated
with `clip_score` and its normalised float16 embeddings, or the Rejection saying why it could not
be scored (no caption, an image that does not decode). Keep/drop decisions are made elsewhere
(threshold or global top fraction), because a top fraction needs the whole pool's scores.
"""

from __future__ import annotations

import numpy as np

from filters.clip_model import ClipSpec, LoadedClip, load_clip
from filters.image_decode import DEFAULT_MAX_PIXELS, decode_for_model
from filters.sample import Rejection, Sample

STAGE = "clipscore"
SCORE = "clip_score"
IMAGE_VECTOR = "clip_image_embedding"
TEXT_VECTOR = "clip_text_embedding"


class ClipScorer:
    def __init__(self, spec: ClipSpec, max_pixels: int | None = DEFAULT_MAX_PIXELS):
        self.spec = spec
        self.loaded: LoadedClip = load_clip(spec)
        self.max_pixels = max_pixels

    @property
    def identity(self) -> dict:
        return self.loaded.identity

    # ---------------------------------------------------------------- raw embeddings
    def embed_images(self, images: list) -> np.ndarray:
        """PIL images -> (N, D) float32, L2-normalised."""
        import torch

        if not images:
            return np.zeros((0, 0), np.float32)
        model = self.loaded.model
        # open_clip's "bf16"/"fp16" precision converts only some layers (its class and positional
        # embeddings stay fp32), so the input dtype follows the precision, as open_clip's own code does.
        dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[self.spec.precision]
        pixels = torch.stack([self.loaded.preprocess(im) for im in images]).to(self.spec.device, dtype)
        with torch.inference_mode():
            features = model.encode_image(pixels, normalize=True)
        return features.float().cpu().numpy()

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        import torch

        if not texts:
            return np.zeros((0, 0), np.float32)
        tokens = self.loaded.tokenizer(texts).to(self.spec.device)
        with torch.inference_mode():
            features = self.loaded.model.encode_text(tokens, normalize=True)
        return features.float().cpu().numpy()

    # ---------------------------------------------------------------- samples
    def score_samples(self, samples: list[Sample]) -> list[Sample | Rejection]:
        outcomes: list[Sample | Rejection] = []
        images, scored = [], []
        for sample in samples:
            decoded = decode_for_model(sample, STAGE, self.max_pixels)
            if isinstance(decoded, Rejection):
                outcomes.append(decoded)
                continue
            outcomes.append(sample)
            images.append(decoded)
            scored.append(sample)
        image_emb = self.embed_images(images)
        text_emb = self.embed_texts([s.caption for s in scored])
        for sample, img, txt in zip(scored, image_emb, text_emb):
            score = float(np.dot(img, txt))
            sample.annotations[SCORE] = score
            sample.set_vector(IMAGE_VECTOR, img)
            sample.set_vector(TEXT_VECTOR, txt)
        return [non_finite_as_rejection(o, STAGE, (SCORE,)) for o in outcomes]


def non_finite_as_rejection(outcome: Sample | Rejection, stage: str, scores: tuple[str, ...]) -> Sample | Rejection:
    """A NaN or inf score (a model that overflowed) is the record's problem, and could not be ranked."""
    if isinstance(outcome, Sample):
        for name in scores:
            value = outcome.annotations.get(name)
            if value is not None and not np.isfinite(value):
                return Rejection.of(outcome, stage, "score_not_finite", f"{name} {value}")
    return outcome
