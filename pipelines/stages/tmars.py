"""The T-MARS stage: detect text regions (PP-OCRv4), fill them with the surrounding colour,
re-score with CLIP, and keep by the masked score (Maini et al. 2023).

After a stage that provides CLIP embeddings it uses that stage's model and reuses its embeddings
(an image without text is not re-embedded): declared by `uses`, resolved in `resolve`.
"""

from __future__ import annotations

import functools

import apache_beam as beam
from pydantic import Field

from filters.clipscore import IMAGE_VECTOR, SCORE, TEXT_VECTOR
from filters.image_checks import DECODE_REASONS
from filters.tmars import MASKED_SCORE, REGIONS, STAGE, TEXT_FRACTION, TmarsScorer
from pipelines.beam.inference import InferSamples
from pipelines.beam.routing import StageOutputs, all_rejections
from pipelines.stages.clipscore import ClipModelConfig, KeepRule, check_clip_model, decide
from pipelines.stages.spec import Cutoff, Preflight, StageSpec


class TmarsConfig(KeepRule):
    """T-MARS: mask text regions, re-score; threshold/top_fraction apply to the masked score."""

    model: ClipModelConfig | None = Field(
        None, description="null: the model of a clipscore stage before it, or (without one) only the text-area rule")
    detector_side: int = Field(256, ge=32, description="longest side the text detector sees (multiple of 32)")
    box_threshold: float = Field(0.5, gt=0.0, lt=1.0, description="PP-OCR detector box score threshold")
    dilate_px: int = Field(2, ge=0, description="grow each text region by this many pixels before filling")
    ring_px: int = Field(4, ge=1, description="width of the ring around a region whose mean colour fills it")
    max_text_fraction: float | None = Field(None, ge=0.0, le=1.0, description="reject larger text areas")
    batch_size: int = Field(32, ge=1)
    max_pixels: int | None = Field(89_478_485, gt=0)
    threads: int | None = Field(None, ge=1, description="onnxruntime threads for the detector (default: all)")


def load_scorer(config: TmarsConfig, with_clip: bool = True) -> TmarsScorer:
    return TmarsScorer(
        spec=config.model.spec(STAGE) if config.model is not None and with_clip else None,
        detector_side=config.detector_side, box_threshold=config.box_threshold, dilate_px=config.dilate_px,
        ring_px=config.ring_px, max_text_fraction=config.max_text_fraction, max_pixels=config.max_pixels,
        threads=config.threads)


class TmarsStage(beam.PTransform):
    def __init__(self, config: TmarsConfig):
        super().__init__()
        self.config = config

    def expand(self, samples):
        c = self.config
        masked = samples | "MaskAndScore" >> InferSamples(functools.partial(load_scorer, c), c.batch_size, STAGE)
        if c.model is None:
            return masked
        decided = decide(masked.kept, MASKED_SCORE, c, STAGE, prefix="masked_")
        return StageOutputs(decided.kept, all_rejections("AllRejected", masked.rejected, decided.rejected))


def resolve(config: TmarsConfig, upstream: dict) -> TmarsConfig:
    """T-MARS compares the masked score with the score of the same model: inherit the model of the
    stage that provides the embeddings it reuses."""
    provider = upstream.get(IMAGE_VECTOR)
    if provider is not None and getattr(provider, "model", None) is not None:
        if config.model is None:
            config = config.model_copy(update={"model": provider.model})
        elif config.model != provider.model:
            raise ValueError("tmars.model differs from the model of the stage before it that provides CLIP "
                             "embeddings; T-MARS compares the masked score with the score of the same model: "
                             "leave tmars.model unset to use that one")
    if config.model is None and (config.threshold is not None or config.top_fraction is not None):
        raise ValueError("tmars threshold/top_fraction apply to the masked CLIP score: set tmars.model")
    if config.model is None and config.max_text_fraction is None:
        raise ValueError("tmars without a model needs max_text_fraction (otherwise it decides nothing)")
    return config


def preflight(config: TmarsConfig) -> Preflight:
    from filters.model_files import file_sha256, package_version

    detector = load_scorer(config, with_clip=False).detector  # onnxruntime on the CPU, always
    found = Preflight(models=[{"stage": STAGE, "name": "PP-OCRv4-det", "package": f"rapidocr_onnxruntime=="
                               f"{package_version('rapidocr_onnxruntime')}", "path": detector.model_path,
                               "sha256": file_sha256(detector.model_path)}])
    if config.model is not None:
        clip = check_clip_model(config.model, STAGE)
        found.models += clip.models
        found.deferred += clip.deferred
    return found


SPEC = StageSpec(
    name=STAGE,
    summary="T-MARS: mask text regions (PP-OCRv4), re-score with CLIP; keep by the masked score or text area",
    config=TmarsConfig,
    build=lambda config, context: TmarsStage(config),
    provides=(MASKED_SCORE, TEXT_FRACTION, REGIONS, SCORE, IMAGE_VECTOR, TEXT_VECTOR),
    provides_for=lambda c: (MASKED_SCORE, TEXT_FRACTION, REGIONS) + (
        (SCORE, IMAGE_VECTOR, TEXT_VECTOR) if c.model is not None else ()),
    uses=(IMAGE_VECTOR,),
    reasons=("caption_missing", *DECODE_REASONS, "text_area_too_large", "score_not_finite", "masked_below_threshold",
             "masked_not_in_top_fraction"),
    preflight=preflight,
    resolve=resolve,
    cutoffs=lambda config: (
        ([Cutoff(MASKED_SCORE, config.threshold, "above", "threshold")] if config.threshold is not None else
         [Cutoff(MASKED_SCORE, None, "above", f"top_fraction {config.top_fraction:g}")]
         if config.top_fraction is not None else [])
        + ([Cutoff(TEXT_FRACTION, config.max_text_fraction, "below", "max_text_fraction")]
           if config.max_text_fraction is not None else [])),
)
