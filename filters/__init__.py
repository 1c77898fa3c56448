"""Pure per-sample logic: each stage's scoring and decision code, with no Beam import."""
