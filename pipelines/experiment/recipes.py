"""The curation recipes the experiment compares, each one `vlcurate curate` recipe as a user writes it.

They build on each other, as DataComp's baselines do: nothing; DataComp's basic filter; + CLIPScore
top fraction (with our own filtering CLIP); + T-MARS (text masked, re-scored with the same CLIP);
+ semantic dedup (keep 80%); + MetaCLIP balancing over the scene vocabulary. The CLIP block and the metadata
file are the experiment's own (filter_clip.py, `write_metadata`); everything else is the stages'
defaults or DataComp's published settings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipelines.experiment.scenes import COLOURS, SHAPES

# DataComp's basic filter, as manifests/recipes/datacomp_basic.yaml writes it.
BASIC = {"heuristics": {
    "caption": {"ftfy": False, "clean_html": False, "min_words": 3, "min_chars": 6},
    "boilerplate": {"enabled": False},
    "language": {"allowed": ["en"], "min_score": 0.0},
    "image": {"min_side": 200, "max_aspect": 3.0, "use_original_size": True,
              "allowed_formats": ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"]},
    "complexity": {"enabled": False},
    "exact_dedup": False,
}}
CLIP_TOP_FRACTION = 0.7  # of what the basic filter keeps: DataComp keeps 30% of a raw web pool; ours is cleaner
TMARS_TOP_FRACTION = 0.9  # T-MARS drops what scores low once its text is masked, of what CLIPScore kept
# SemDeDup's epsilon chosen by retention, as the paper sets its runs (its headline removes 50% of raw
# LAION); this pool reaches dedup already filtered three times, so a milder 80% is kept. The stage
# derives epsilon from the embeddings (pipelines/stages/semantic_dedup.py): no threshold is tuned to
# this CLIP or to the pool's truth.
SEMDEDUP_KEEP_FRACTION = 0.8
RECIPE_NAMES = ("raw", "basic", "clipscore", "tmars", "semdedup", "metaclip")


def metadata_entries() -> list[str]:
    """MetaCLIP's metadata for this world: every (colour, shape) phrase, singular and plural, as
    captions write them."""
    entries = []
    for colour in COLOURS:
        for shape in SHAPES:
            entries += [f"{colour} {shape}", f"{colour} {shape}{'es' if shape == 'cross' else 's'}"]
    return entries


def write_metadata(path: Path) -> Path:
    path.write_text(json.dumps(metadata_entries()))
    return path


def recipes(clip_block: dict[str, Any], metadata: Path, pool_size: int, seed: int = 0) -> dict[str, dict]:
    """name -> recipe data (what parse_recipe takes). MetaCLIP's t: pool.py gives each of the 4 head
    concepts weight 100 and each of the 44 tail concepts weight 1 (a tail concept is ~pool/444 samples,
    a head one ~pool/4.4); t = pool/40 is ~10x a tail concept's count, so the tail is kept whole and the
    head cut ~10x, as MetaCLIP's t=20,000 leaves its tail whole and cuts its head on a 400M pool."""
    clipscore = {"clipscore": {"model": clip_block, "top_fraction": CLIP_TOP_FRACTION, "batch_size": 64}}
    tmars = {"tmars": {"top_fraction": TMARS_TOP_FRACTION, "batch_size": 32}}
    semdedup = {"semantic_dedup": {"keep_fraction": SEMDEDUP_KEEP_FRACTION, "clusters": max(4, pool_size // 200)}}
    metaclip = {"metaclip": {"metadata": str(metadata), "t": max(10, pool_size // 40), "plot": True}}
    stages = {
        "raw": [],
        "basic": [BASIC],
        "clipscore": [BASIC, clipscore],
        "tmars": [BASIC, clipscore, tmars],
        "semdedup": [BASIC, clipscore, tmars, semdedup],
        "metaclip": [BASIC, clipscore, tmars, semdedup, metaclip],
    }
    return {name: {"name": f"mini_datacomp_{name}", "seed": seed, "stages": steps,
                   "description": f"mini-DataComp recipe '{name}'", "output": {"samples_per_shard": 500}}
            for name, steps in stages.items()}
