"""Beam: sources, stage PTransforms (thin wrappers over filters/), sinks, and the `vlcurate` CLI.

Import nothing here: img2dataset's worker processes import pipelines.download_guard, and pulling
Beam in with it cost each worker 1.4 s of start-up (measured with -X importtime).
"""
