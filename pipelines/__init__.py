"""Beam curation, by role: drivers/ (the commands), stages/ (one module per stage, each a declared
StageSpec), beam/ (coders, source, sinks, routing, inference glue), io/ (readers, URL lists, run
directory, rejection files, download guard), and cli.py.

Import nothing here: img2dataset's worker processes import pipelines.io.download_guard, and pulling
Beam in with it cost each worker 1.4 s of start-up (measured with -X importtime).
"""
