"""The CLIPScore stage on Beam: RunInference scores every sample, then threshold or global top fraction."""

from __future__ import annotations

import functools

import apache_beam as beam

from filters.clipscore import SCORE, STAGE, ClipScorer
from manifests.recipe import ClipScoreConfig
from pipelines.model_inference import InferSamples
from filters.sample import Rejection
from pipelines.stage import REJECTED, StageOutputs
from pipelines.top_fraction import KeepTopFraction, keep_above


class _BatchScorer:
    """What RunInference loads per worker: a ClipScorer with the process_batch interface."""

    def __init__(self, config: ClipScoreConfig):
        self.scorer = ClipScorer(config.model.spec(STAGE), config.max_pixels)

    def process_batch(self, samples):
        return self.scorer.score_samples(samples)


def decide(samples, score_key: str, threshold: float | None, top_fraction: float | None, stage: str,
           prefix: str = "") -> StageOutputs:
    """Keep by threshold, or by global top fraction, or keep all (annotate only)."""
    if threshold is not None:
        return keep_above(samples, score_key, threshold, stage, f"{prefix}below_threshold")
    if top_fraction is not None:
        return samples | "TopFraction" >> KeepTopFraction(score_key, top_fraction, stage,
                                                          f"{prefix}not_in_top_fraction")
    empty = samples.pipeline | "NoRejections" >> beam.Create([]).with_output_types(Rejection)
    return StageOutputs(samples, empty)


class ClipScoreStage(beam.PTransform):
    name_in_funnel = STAGE

    def __init__(self, config: ClipScoreConfig):
        super().__init__()
        self.config = config

    def expand(self, samples):
        c = self.config
        scored = samples | "Score" >> InferSamples(functools.partial(_BatchScorer, c), c.batch_size, STAGE)
        decided = decide(scored.kept, SCORE, c.threshold, c.top_fraction, STAGE)
        rejected = (scored[REJECTED], decided.rejected) | "AllRejected" >> beam.Flatten()
        return StageOutputs(decided.kept, rejected)


def preflight(config: ClipScoreConfig) -> list[dict]:
    scorer = ClipScorer(config.model.spec(STAGE))
    return [{"stage": STAGE, **scorer.identity}]
