"""What every stage PTransform returns: its kept Samples and its Rejections."""

from __future__ import annotations

from typing import NamedTuple

import apache_beam as beam

REJECTED = "rejected"


class StageOutputs(NamedTuple):
    kept: beam.PCollection
    rejected: beam.PCollection
