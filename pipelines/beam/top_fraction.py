"""Global top-fraction decision on Beam (filters/top_fraction.py): histogram -> cutoff -> keep.

The histogram is a CombineFn (a quantile combiner in effect, but exact) whose result, and then the
cutoff, reach every worker as side inputs, so the decision needs no worker to see the whole pool.
"""

from __future__ import annotations

import functools
from collections import Counter

import apache_beam as beam

from filters.sample import Rejection, Sample
from filters.top_fraction import bin_of, cutoff_from_band, in_top, plan_cutoff
from pipelines.beam.routing import StageOutputs, split


class ScoreHistogram(beam.CombineFn):
    """Scores -> {bin: count}, sparse (real scores fill a small part of [-1, 1])."""

    def create_accumulator(self):
        return Counter()

    def add_input(self, accumulator, score):
        accumulator[bin_of(score)] += 1
        return accumulator

    def merge_accumulators(self, accumulators):
        merged = Counter()
        for acc in accumulators:
            merged.update(acc)
        return merged

    def extract_output(self, accumulator):
        return dict(accumulator)


def _band_member(sample: Sample, score_key: str, plan):
    score = sample.annotations[score_key]
    if plan.keep and bin_of(score) == plan.bin:
        yield (-score, sample.key)


def _decide(sample: Sample, score_key: str, cutoff, fraction: float, stage: str, reason: str):
    score = sample.annotations[score_key]
    if in_top(score, sample.key, cutoff):
        return sample
    threshold = "none kept" if cutoff is None else f"cutoff {-cutoff[0]:.6f} ({cutoff[1]})"
    return Rejection.of(sample, stage, reason, f"{score:.6f} not in the top {fraction:.2%}: {threshold}")


class KeepTopFraction(beam.PTransform):
    """Samples with annotations[score_key] -> the top `fraction` of them (exactly ceil(f * n))."""

    def __init__(self, score_key: str, fraction: float, stage: str, reason: str):
        super().__init__()
        self.score_key, self.fraction, self.stage, self.reason = score_key, fraction, stage, reason

    def expand(self, samples):
        key, fraction = self.score_key, self.fraction
        plan = (
            samples
            | "Scores" >> beam.Map(lambda s: s.annotations[key]).with_output_types(float)
            | "Histogram" >> beam.CombineGlobally(ScoreHistogram())
            | "Plan" >> beam.Map(plan_cutoff, fraction=fraction)
        )
        cutoff = (
            samples
            | "CutoffBin" >> beam.FlatMap(_band_member, score_key=key, plan=beam.pvalue.AsSingleton(plan))
            .with_output_types(beam.typehints.Tuple[float, str])
            | "CollectBin" >> beam.combiners.ToList()
            | "Cutoff" >> beam.Map(cutoff_from_band, plan=beam.pvalue.AsSingleton(plan))
        )
        return split(samples, "Decide", functools.partial(_decide, stage=self.stage, reason=self.reason),
                     stage=self.stage, score_key=key, cutoff=beam.pvalue.AsSingleton(cutoff), fraction=fraction)


def keep_above(samples, score_key: str, threshold: float, stage: str, reason: str, label: str = "Threshold"):
    """The simple rule: keep score >= threshold."""

    def decide(sample: Sample):
        score = sample.annotations[score_key]
        if score >= threshold:
            return sample
        return Rejection.of(sample, stage, reason, f"{score:.6f} < {threshold}")

    return split(samples, label, decide, stage=stage)
