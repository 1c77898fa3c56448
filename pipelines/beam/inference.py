"""RunInference over Samples: one model per worker process, fixed-size batches, keyed by the Sample.

A model stage hands RunInference a loader (a picklable callable returning an object with
`process_batch(list[Sample]) -> list[Sample | Rejection]`). The examples are the Samples
themselves, so each result stays bound to its key, image and caption with no join afterwards;
a sample the model cannot take (undecodable image) comes back as its Rejection, not an exception.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.ml.inference.base import ModelHandler, RunInference

from filters.sample import Rejection, Sample
from pipelines.beam.coders import Tagged
from pipelines.beam.routing import StageOutputs, measured_call, split


class SampleBatchHandler(ModelHandler):
    def __init__(self, loader: Callable[[], Any], batch_size: int, namespace: str, large_model: bool = False):
        # min == max: BatchElements otherwise starts small and grows, and small batches waste a model.
        super().__init__(min_batch_size=batch_size, max_batch_size=batch_size, large_model=large_model)
        self.loader = loader
        self.namespace = namespace

    def load_model(self):
        return self.loader()

    def run_inference(self, batch: Sequence[Sample], model, inference_args=None):
        # A batch that raises is retried record by record: one bad record becomes its own
        # error Rejection instead of failing the batch (and, on Dataflow, the job).
        outcomes = measured_call(lambda records: model.process_batch(records), list(batch),
                                 self.namespace.removeprefix("vlcurate."))
        return [Tagged(o) for o in outcomes]  # one typed carrier for Samples and Rejections alike

    def get_num_bytes(self, batch: Sequence[Sample]) -> int:
        # The default pickles the whole batch just to measure it.
        return sum(len(s.image or b"") for s in batch)

    def get_metrics_namespace(self) -> str:
        return self.namespace


class InferSamples(beam.PTransform):
    """Samples -> (annotated Samples, Rejections) through RunInference with `loader`'s model."""

    def __init__(self, loader: Callable[[], Any], batch_size: int, stage: str, large_model: bool = False):
        super().__init__()
        self.handler = SampleBatchHandler(loader, batch_size, f"vlcurate.{stage}", large_model)
        self.stage = stage

    def expand(self, samples) -> StageOutputs:
        outcomes = samples | "RunInference" >> RunInference(self.handler).with_output_types(Tagged)
        return split(outcomes, "Route", lambda tagged: tagged.record, stage=self.stage)
