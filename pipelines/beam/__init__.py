"""Beam plumbing written once for every stage and driver: record coders, the input source, the
sinks, RunInference glue, global top-fraction decisions, and kept/rejected routing."""
