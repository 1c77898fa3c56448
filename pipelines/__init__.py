"""Beam: sources, stage PTransforms (thin wrappers over filters/), sinks, and the `vlcurate` CLI."""

from pipelines import coders  # noqa: F401  (registers the Sample/Rejection coders with Beam)
