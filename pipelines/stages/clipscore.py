"""The CLIPScore stage: RunInference scores every sample (cosine of open_clip image and text
embeddings), then keeps by threshold or by global top fraction, or only annotates.

ClipModelConfig and KeepRule live here and are shared with T-MARS, which scores with the same model.
"""

from __future__ import annotations

import functools
from typing import Literal

import apache_beam as beam

from pydantic import Field, model_validator

from filters.clipscore import IMAGE_VECTOR, SCORE, STAGE, TEXT_VECTOR, ClipScorer
from filters.image_checks import DECODE_REASONS
from manifests.recipe_paths import RecipePath, RecipePathOrName
from manifests.schema import Strict
from pipelines.beam.inference import InferSamples
from pipelines.beam.routing import StageOutputs, all_rejections, no_rejections
from pipelines.beam.top_fraction import KeepTopFraction, keep_above
from pipelines.stages.spec import Cutoff, Preflight, StageSpec


class ClipModelConfig(Strict):
    """An open_clip model: architecture + weights (tag or local file), optionally a custom config dir."""

    name: str = Field("ViT-B-32", description="open_clip architecture, e.g. ViT-B-32, ViT-L-14")
    pretrained: RecipePathOrName | None = Field(None, description="a pretrained tag (e.g. laion2b_s34b_b79k) or a "
                                                "checkpoint path")
    config_dir: RecipePath | None = Field(None, description="directory with NAME.json for a custom architecture")
    cache_dir: RecipePath | None = Field(None, description="where open_clip keeps downloaded weights")
    device: Literal["cpu", "cuda"] = "cpu"
    precision: Literal["fp32", "fp16", "bf16"] = "fp32"

    def spec(self, stage: str):
        from filters.clip_model import ClipSpec

        return ClipSpec(self.name, self.pretrained, self.config_dir, self.cache_dir, self.device, self.precision, stage)


class KeepRule(Strict):
    threshold: float | None = Field(None, ge=-1.0, le=1.0, description="keep score >= threshold")
    top_fraction: float | None = Field(None, gt=0.0, le=1.0, description="keep the global top fraction (ties by key)")

    @model_validator(mode="after")
    def one_rule(self):
        if self.threshold is not None and self.top_fraction is not None:
            raise ValueError("set threshold or top_fraction, not both (neither: annotate only)")
        return self


class ClipScoreConfig(KeepRule):
    model: ClipModelConfig = ClipModelConfig()
    batch_size: int = Field(64, ge=1, description="images per forward pass")
    max_pixels: int | None = Field(89_478_485, gt=0, description="decompression-bomb guard when decoding")


class _BatchScorer:
    """What RunInference loads per worker: a ClipScorer with the process_batch interface."""

    def __init__(self, config: ClipScoreConfig):
        self.scorer = ClipScorer(config.model.spec(STAGE), config.max_pixels)

    def process_batch(self, samples):
        return self.scorer.score_samples(samples)


def decide(samples, score_key: str, rule: KeepRule, stage: str, prefix: str = "") -> StageOutputs:
    """Keep by threshold, or by global top fraction, or keep all (annotate only)."""
    if rule.threshold is not None:
        return keep_above(samples, score_key, rule.threshold, stage, f"{prefix}below_threshold")
    if rule.top_fraction is not None:
        return samples | "TopFraction" >> KeepTopFraction(score_key, rule.top_fraction, stage,
                                                          f"{prefix}not_in_top_fraction")
    return StageOutputs(samples, no_rejections(samples.pipeline))


class ClipScoreStage(beam.PTransform):
    def __init__(self, config: ClipScoreConfig):
        super().__init__()
        self.config = config

    def expand(self, samples):
        c = self.config
        scored = samples | "Score" >> InferSamples(functools.partial(_BatchScorer, c), c.batch_size, STAGE)
        decided = decide(scored.kept, SCORE, c, STAGE)
        return StageOutputs(decided.kept, all_rejections("AllRejected", scored.rejected, decided.rejected))


def check_clip_model(model: ClipModelConfig, stage: str) -> Preflight:
    from filters.clip_model import check_weights

    identity, deferred = check_weights(model.spec(stage))
    return Preflight(models=[{"stage": stage, **identity}], deferred=deferred)


SPEC = StageSpec(
    name=STAGE,
    summary="CLIPScore (open_clip): cosine of image and caption embeddings; threshold or exact global top fraction",
    config=ClipScoreConfig,
    build=lambda config, context: ClipScoreStage(config),
    provides=(SCORE, IMAGE_VECTOR, TEXT_VECTOR),
    reasons=("caption_missing", *DECODE_REASONS, "score_not_finite", "below_threshold", "not_in_top_fraction"),
    preflight=lambda config: check_clip_model(config.model, STAGE),
    cutoffs=lambda config: (
        [Cutoff(SCORE, config.threshold, "above", "threshold")] if config.threshold is not None else
        [Cutoff(SCORE, None, "above", f"top_fraction {config.top_fraction:g}")] if config.top_fraction is not None
        else []),
)
