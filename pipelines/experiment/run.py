"""`vlcurate experiment mini-datacomp OUT`: one command from a generated pool to a results table.

1. pool.py writes OUT/pool (noisy, heavy-tailed, with OUT/pool/truth.parquet), OUT/heldout (clean,
   balanced, several references) and OUT/clean (clean, balanced: the filtering CLIP's data).
2. filter_clip.py trains OUT/filter_clip on OUT/clean: our own CLIP (DFN's idea), used by the
   clipscore and tmars stages through its checkpoint like downloaded weights; its zero-shot accuracy
   on the held-out set is recorded.
3. Each recipe of recipes.py is curated with `curate` into OUT/runs/NAME (a normal run: manifest,
   report.html, rejection table).
4. The same captioner (frozen filtering CLIP + tiny LM, PaLM2-VAdapter's stage 1) is trained on each
   run for the same number of samples seen (DataComp's rule: smaller sets are repeated) with the
   same seeds, and evaluated on the held-out set: validation loss, CIDEr-D over all references,
   and concept accuracy (does the generated caption name the right colour, shape and count).
5. results.py writes OUT/results.json and OUT/index.html; filter precision/recall per noise type
   come from the full recipe's rejection table against the pool's truth.
"""

from __future__ import annotations

import json
import logging
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

log = logging.getLogger("vlcurate")


@dataclass(frozen=True)
class Scale:
    pool: int
    heldout: int
    clean: int
    clip_steps: int
    clip_batch: int
    train_steps: int
    batch: int
    tiny_lm_width: int
    tiny_lm_layers: int


SCALES = {
    # make test: every step runs, nothing is learnt
    "tiny": Scale(pool=160, heldout=48, clean=192, clip_steps=4, clip_batch=32, train_steps=4, batch=8,
                  tiny_lm_width=32, tiny_lm_layers=1),
    # the README's table: 2 CPU cores, under 30 minutes
    "default": Scale(pool=4000, heldout=480, clean=4000, clip_steps=400, clip_batch=128, train_steps=300, batch=32,
                     tiny_lm_width=128, tiny_lm_layers=2),
    # a GPU, or patience
    "large": Scale(pool=40000, heldout=960, clean=20000, clip_steps=1500, clip_batch=256, train_steps=3000, batch=64,
                   tiny_lm_width=256, tiny_lm_layers=4),
}


def train_config(run_dir: Path, heldout: Path, clip: dict[str, Any], tokenizer: str, scale: Scale, seed: int,
                 device: str, out_dir: Path) -> dict[str, Any]:
    """The trainer's config for one (recipe, seed): stage-1 captioner over the frozen filtering CLIP,
    with the experiment's word-level tokenizer (tokenizer.py)."""
    return {
        "run": {"out_dir": str(out_dir), "stage": "captioner", "device": device, "seed": seed,
                "log_every": max(1, scale.train_steps // 10), "checkpoint_every": scale.train_steps,
                "eval_shards": f"{heldout}/shards/*.tar"},
        "vision": {"name": clip["name"], "pretrained": clip["pretrained"], "config_dir": clip["config_dir"]},
        "llm": {"path": tokenizer},  # stage 1 reads only the tokenizer from it
        "adapter": {"kind": "vadapter", "queries": 16, "heads": 4,
                    "tiny_lm": {"width": scale.tiny_lm_width, "layers": scale.tiny_lm_layers, "heads": 4,
                                "max_len": 64}},
        # Eager CPU runs pad each batch to its longest caption (fewer positions); fixed shapes
        # (pad_to: max) pay off only when compiled on a GPU.
        "data": {"shards": str(run_dir / "manifest.json"), "batch_size": scale.batch, "workers": 0,
                 "max_caption_tokens": 32, "pad_to": "longest" if device == "cpu" else "max"},
        "optim": {"lr": 2e-3, "warmup_steps": max(1, scale.train_steps // 20), "steps": scale.train_steps},
    }


def concept_scores(predictions: list[dict[str, Any]]) -> dict[str, float]:
    """Shares of generated captions naming the reference's colour, shape, count, and all three."""
    from pipelines.experiment.scenes import read_concepts

    hits = {"colour": 0, "shape": 0, "count": 0, "concept": 0}
    for row in predictions:
        truth, said = read_concepts(row["references"][0]), read_concepts(row["generated"])
        if truth is None:
            continue
        same = {k: said is not None and said[k] == truth[k] for k in ("colour", "shape", "count")}
        for k, v in same.items():
            hits[k] += v
        hits["concept"] += all(same.values())
    n = max(1, len(predictions))
    return {f"{k}_accuracy": v / n for k, v in hits.items()}


class ExperimentError(RuntimeError):
    """The experiment cannot start; one line."""


def run_experiment(out: str | Path, scale_name: str = "default", seeds: int = 3, device: str = "cpu",
                   seed: int = 0, only: list[str] | None = None, overwrite: bool = False) -> dict[str, Any]:
    """`only`: a subset of recipes.RECIPE_NAMES (the filter table comes from the last one run).
    An OUT that holds anything is refused unless `overwrite` (an earlier experiment's results)."""
    from manifests.recipe import parse_recipe
    from pipelines.drivers.curate import curate
    from pipelines.experiment.filter_clip import train_filter_clip, zero_shot_accuracy
    from pipelines.experiment.pool import write_clean, write_heldout, write_pool
    from pipelines.experiment.recipes import recipes, write_metadata
    from pipelines.experiment.results import dedup_pairs, filter_table, write_results
    from pipelines.experiment.tokenizer import clean_captions, write_word_tokenizer

    # Absolute, so the model paths the curated runs' manifests record mean the same from any directory.
    out, scale = Path(out).absolute(), SCALES[scale_name]
    if out.is_file() or (out.is_dir() and any(out.iterdir()) and not overwrite):
        raise ExperimentError(f"{out} is a file" if out.is_file() else
                              f"{out} is not empty (an earlier experiment?); pass --overwrite to run it again there")
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    write_pool(out / "pool", scale.pool, seed)
    write_heldout(out / "heldout", scale.heldout, seed)
    write_clean(out / "clean", scale.clean, seed)
    tokenizer = write_word_tokenizer(out / "tokenizer", clean_captions(f"{out}/clean/shards/*.tar"))
    timings["data"] = time.perf_counter() - started

    t = time.perf_counter()
    # CPU threads as the trainer chooses them (trainers/train.py cpu_threads): one per core less one;
    # on a 2-core box 1 thread trained this CLIP 5x faster than torch's default of 2.
    threads = max(1, (os.cpu_count() or 1) - 1) if device == "cpu" else None
    clip = train_filter_clip(f"{out}/clean/shards/*.tar", out / "filter_clip", steps=scale.clip_steps,
                             batch_size=scale.clip_batch, seed=seed, device=device, threads=threads)
    block = {k: clip[k] for k in ("name", "pretrained", "config_dir")}
    zero_shot = zero_shot_accuracy(block, f"{out}/heldout/shards/*.tar", device=device)
    timings["filter_clip"] = time.perf_counter() - t
    log.info("filtering CLIP: zero-shot %s", zero_shot)

    t = time.perf_counter()
    metadata = write_metadata(out / "metaclip_metadata.json")
    runs: dict[str, Path] = {}
    kept: dict[str, int] = {}
    for name, data in recipes(block, metadata, scale.pool, seed).items():
        if only and name not in only:
            continue
        runs[name] = out / "runs" / name
        result = curate(parse_recipe(data), f"{out}/pool/shards/*.tar", str(runs[name]), overwrite=True)
        kept[name] = result.manifest.counts.kept
        log.info("recipe %s: %d of %d kept", name, kept[name], result.manifest.counts.input)
    timings["curate"] = time.perf_counter() - t

    t = time.perf_counter()
    metrics = {name: {} for name in runs}
    for name, run_dir in runs.items():
        for s in range(seeds):
            scores = _train_and_eval(run_dir, out / "heldout", block, tokenizer, scale, seed + s, device,
                                     out / "train" / f"{name}-seed{s}")
            for metric, value in scores.items():
                metrics[name].setdefault(metric, []).append(value)
    timings["train_eval"] = time.perf_counter() - t

    truth = pq.read_table(out / "pool" / "truth.parquet",
                          columns=["key", "noise", "colour", "shape", "duplicate_of"]).to_pylist()
    results = {
        "recipes": {name: {"samples_kept": kept[name], "metrics": metrics[name]} for name in runs},
        "filters": filter_table(runs[list(runs)[-1]], truth),
        "dedup_pairs": dedup_pairs(runs[list(runs)[-1]], truth),
        "filter_clip": {"zero_shot": zero_shot, **{k: v for k, v in clip.items() if k not in block}},
        "setup": {"scale": scale_name, **asdict(scale), "seeds": seeds, "device": device, "seed": seed,
                  "samples_seen": scale.train_steps * scale.batch, "timings_s": timings},
    }
    results["summary"] = (f"{scale.pool:,} pool samples, {seeds} seed(s), {scale.train_steps * scale.batch:,} "
                          f"samples seen per training, {sum(timings.values()) / 60:.1f} min")
    write_results(out, results)
    return results


def _train_and_eval(run_dir: Path, heldout: Path, clip: dict[str, Any], tokenizer: str, scale: Scale, seed: int,
                    device: str, out_dir: Path) -> dict[str, float]:
    from trainers.config import config_from_dict
    from trainers.evaluate import evaluate
    from trainers.train import train

    cfg = config_from_dict(train_config(run_dir, heldout, clip, tokenizer, scale, seed, device, out_dir)).validate()
    with _without_worker_hints():
        train(cfg, overwrite=True)
    scores = evaluate(cfg, batches=None, out_dir=str(out_dir / "heldout_eval"))  # the whole held-out set
    predictions = [json.loads(line) for line in
                   (out_dir / "heldout_eval" / scores["predictions"]).read_text().splitlines()]
    return {"val_loss": scores["val_loss"], "cider_d": scores["cider_d"], **concept_scores(predictions)}


@contextmanager
def _without_worker_hints():
    """The experiment trains with data.workers 0 on purpose (on 2 cores a worker process competes with
    the step for the same CPUs); the trainer's hint to add workers names a setting the user of this
    command cannot change, once per training run (18 times at the tiny scale). Other warnings pass."""
    def drop(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("the step waited for data")

    logger = logging.getLogger("vlcurate")
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)
