"""Recipes (what to run), manifests (what a run produced) and how both are stored."""
