"""The T-MARS stage on Beam: RunInference (detect, mask, re-score), then keep by the masked score."""

from __future__ import annotations

import functools

import apache_beam as beam

from filters.tmars import MASKED_SCORE, STAGE, TmarsScorer
from manifests.recipe import TmarsConfig
from pipelines.clipscore_stage import decide
from pipelines.model_inference import InferSamples
from pipelines.stage import REJECTED, StageOutputs


def load_scorer(config: TmarsConfig) -> TmarsScorer:
    return TmarsScorer(
        spec=config.model.spec(STAGE) if config.model is not None else None,
        detector_side=config.detector_side, box_threshold=config.box_threshold, dilate_px=config.dilate_px,
        ring_px=config.ring_px, max_text_fraction=config.max_text_fraction, max_pixels=config.max_pixels,
        threads=config.threads)


class TmarsStage(beam.PTransform):
    name_in_funnel = STAGE

    def __init__(self, config: TmarsConfig):
        super().__init__()
        self.config = config

    def expand(self, samples):
        c = self.config
        masked = samples | "MaskAndScore" >> InferSamples(functools.partial(load_scorer, c), c.batch_size, STAGE)
        if c.model is None:
            return StageOutputs(masked.kept, masked[REJECTED])
        decided = decide(masked.kept, MASKED_SCORE, c.threshold, c.top_fraction, STAGE, prefix="masked_")
        rejected = (masked[REJECTED], decided.rejected) | "AllRejected" >> beam.Flatten()
        return StageOutputs(decided.kept, rejected)


def preflight(config: TmarsConfig) -> list[dict]:
    from filters.model_files import file_sha256, package_version

    scorer = load_scorer(config)
    found = [{"stage": STAGE, "name": "PP-OCRv4-det", "package": f"rapidocr_onnxruntime=="
              f"{package_version('rapidocr_onnxruntime')}", "path": scorer.detector.model_path,
              "sha256": file_sha256(scorer.detector.model_path)}]
    if scorer.clip is not None:
        found.append({"stage": STAGE, **scorer.clip.identity})
    return found
