"""What every stage PTransform returns: its kept Samples and its Rejections."""

from __future__ import annotations

from typing import NamedTuple

import apache_beam as beam

from filters.sample import Sample
from pipelines import coders  # noqa: F401  (registers SampleCoder/RejectionCoder wherever stages run)

REJECTED = "rejected"
# Declared on keyed steps so Beam encodes (key, Sample) with SampleCoder, not its pickle fallback.
KeyedSample = beam.typehints.Tuple[str, Sample]


class StageOutputs(NamedTuple):
    kept: beam.PCollection
    rejected: beam.PCollection
