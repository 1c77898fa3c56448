"""Evaluation: loss, greedy or beam-search captions, CIDEr-D against the references, and a page
(trainers/eval_page.py) with the run's curves and samples (`vlcurate eval`). Stage 2 generates with
transformers' `generate` on the frozen LLM; the stage-1 captioner with trainers/decode.py.

Scores are on run.eval_shards, the held-out split. Where it is not set, or shares shards with
data.shards, the scores are on training data: they are then labelled so (split "training data",
`train_loss`, not `val_loss`) in the result, scores.json, the page and a WARNING, never passed off
as validation. Every eval appends its scores with the checkpoint's step to RUN/eval/history.jsonl,
so the page's CIDEr-D and eval-loss curves grow as a run's checkpoints are evaluated."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import torch
from tqdm import tqdm

from trainers.build import build_model
from trainers.captioner import Captioner
from trainers.checkpoint import CheckpointError, checkpoint_problem, latest_checkpoint, load_weights
from trainers.cider import cider_d, tokenize
from trainers.config import TrainConfig, config_to_dict
from trainers.data import TaskBatches, build_index, shard_urls
from trainers.eval_page import read_jsonl, render
from trainers.inputs import ModelInputs
from trainers.run_dir import EVAL, EVAL_HISTORY, METRICS
from trainers.tasks import build_task
from trainers.vlm import AdapterVLM

log = logging.getLogger("vlcurate")


@torch.no_grad()
def generate(model: AdapterVLM, prompts: ModelInputs, max_new_tokens: int = 32, beams: int = 1) -> list[str]:
    """Text from the frozen LLM continuing each prompt, visual tokens spliced in (greedy when beams == 1)."""
    prefix, mask, _ = model.embed_inputs(prompts)
    tok = model.llm.tokenizer
    out = model.llm.model.generate(inputs_embeds=prefix, attention_mask=mask, max_new_tokens=max_new_tokens,
                                   do_sample=False, num_beams=beams, pad_token_id=tok.pad_token_id,
                                   eos_token_id=tok.eos_token_id)
    return [t.strip() for t in tok.batch_decode(out, skip_special_tokens=True)]


def captions_for(model: AdapterVLM | Captioner, tokenizer, prompts: ModelInputs, max_new_tokens: int,
                 beams: int) -> list[str]:
    """Stage 2 captions through the frozen LLM; stage 1's captioner decodes with its own tiny LM."""
    if isinstance(model, Captioner):
        ids = model.generate(prompts, max_new_tokens, tokenizer.eos_token_id, beams)
        return [t.strip() for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]
    return generate(model, prompts, max_new_tokens, beams)


def eval_split(config: TrainConfig) -> tuple[str, str, list[str], str | None]:
    """(split, shards spec, shard URLs, warning): run.eval_shards when it is set and held out, else
    the training shards, said so."""
    if not config.run.eval_shards:
        return "training data", config.data.shards, shard_urls(config.data.shards), (
            "run.eval_shards is not set, so these scores are on the TRAINING shards (data.shards), not on "
            "held-out data: set run.eval_shards to held-out shards (e.g. another curated run's manifest.json)")
    urls = shard_urls(config.run.eval_shards)
    try:
        training = {_where(u) for u in shard_urls(config.data.shards)}
    except FileNotFoundError:  # the training shards have moved: nothing to compare with
        training = set()
    shared = [u for u in urls if _where(u) in training]
    if shared:
        return "training data", config.run.eval_shards, urls, (
            f"{len(shared)} of the {len(urls)} shards of run.eval_shards are also training shards (data.shards), "
            f"e.g. {shared[0]}: these scores are on TRAINING data, not held out")
    return "validation", config.run.eval_shards, urls, None


def _where(url: str) -> str:
    """A shard's identity for comparing two specs: local paths resolved (relative, symlinked, `./`)."""
    return url if "://" in url else os.path.realpath(url)


def _run_dir(config: TrainConfig, checkpoint: Path) -> Path:
    """The run a checkpoint belongs to (RUN/checkpoints/step-N), which may not be run.out_dir under --checkpoint."""
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else Path(config.run.out_dir)


@torch.no_grad()
def evaluate(config: TrainConfig, checkpoint: str | None = None, batches: int = 4, beams: int = 1,
             out_dir: str | None = None, progress: bool = False) -> dict:
    device = torch.device("cuda" if config.run.device != "cpu" and torch.cuda.is_available() else "cpu")
    path = Path(checkpoint) if checkpoint else latest_checkpoint(config.run.out_dir)
    if checkpoint and (problem := checkpoint_problem(path)):
        raise CheckpointError(f"{path} cannot be used: {problem}")
    if path is None:
        raise FileNotFoundError(f"no checkpoint in {config.run.out_dir}/checkpoints; train first or pass --checkpoint")
    state = json.loads((path / "state.json").read_text())
    split, shards, urls, warning = eval_split(config)  # before the models load: a bad path fails in seconds
    if warning:
        log.warning("%s", warning)
    index = build_index(urls)
    model, trainable, tokenizer, preprocess = build_model(config)
    load_weights(path, trainable)
    model.to(device).eval()
    task = build_task(config, tokenizer, preprocess)
    if not hasattr(task, "prompts"):
        raise ValueError(f"vlcurate eval scores captions; data.task {config.data.task!r} has no prompts to caption")
    data = TaskBatches(index, task, config.data.batch_size, seed=config.run.seed + 1_000_003, keep_raw=True)
    losses, refs, cands, rows = [], {}, {}, []
    for b in tqdm(range(batches), desc="eval", unit="batch", disable=not progress, dynamic_ncols=True):
        batch = data.batch(b)
        inputs = batch["inputs"].to(device)
        losses.append(float(model(inputs)))
        prompts = task.prompts(batch["inputs"].pixels).to(device)
        captions = captions_for(model, tokenizer, prompts, config.data.max_caption_tokens, beams)
        for j, (caption, record) in enumerate(zip(captions, batch["records"])):
            key = f"{b}-{j}"
            refs[key], cands[key] = [tokenize(record.text)], tokenize(caption)
            rows.append({"key": key, "generated": caption, "references": [record.text],
                         "image": record.image_bytes[0]})
    cider, per = cider_d(refs, cands)
    loss = sum(losses) / len(losses)
    result = {"checkpoint": str(path), "step": state["step"], "split": split, "shards": shards,
              "val_loss" if split == "validation" else "train_loss": loss, "cider_d": cider,
              "samples": len(rows), "beams": beams}
    if warning:
        result["warning"] = warning
    run = _run_dir(config, path)
    _record(run, {**{k: result[k] for k in ("step", "checkpoint", "split", "shards", "cider_d", "samples", "beams")},
                  "loss": loss, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    out = Path(out_dir) if out_dir else run / EVAL / path.name
    out.mkdir(parents=True, exist_ok=True)
    (out / "scores.json").write_text(json.dumps(result, indent=2))
    run_config, note = _run_config(config, state, path)
    page = render(result, rows, per, run_config, note, read_jsonl(run / METRICS), read_jsonl(run / EVAL / EVAL_HISTORY))
    (out / "index.html").write_text(page, encoding="utf-8")
    log.info("eval %s on %s: loss %.4f, CIDEr-D %.3f on %d samples -> %s", path.name, split, loss, cider,
             len(rows), out)
    return result


def _record(run: Path, entry: dict) -> None:
    """One line per eval in RUN/eval/history.jsonl: the page's curves over steps."""
    (run / EVAL).mkdir(parents=True, exist_ok=True)
    with open(run / EVAL / EVAL_HISTORY, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


def _run_config(config: TrainConfig, state: dict, path: Path) -> tuple[dict, str]:
    """The config the checkpoint was trained with (its state.json), and a note naming the keys the
    eval's config changes (run.eval_shards, say), so the page shows what produced the weights."""
    current = config_to_dict(config)
    saved = state.get("config")
    if not isinstance(saved, dict):
        return current, f"{path.name}/state.json holds no config: the config given to eval"
    before, now = _flat(saved), _flat(current)
    changed = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
    note = f"as trained (from {path.name}/state.json)"
    if changed:
        note += f"; the eval's config differs in {', '.join(changed)}"
    return saved, note


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
