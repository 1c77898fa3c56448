"""Evaluation: loss, greedy or beam-search captions, CIDEr-D against the references, and a page
(trainers/eval_page.py) with the run's curves and samples (`vlcurate eval`). Stage 2 generates with
transformers' `generate` on the frozen LLM; the stage-1 captioner with trainers/decode.py.

Scores are on run.eval_shards, the held-out split: a few random batches (`--batches`), or the
whole split, every sample once in shard order (run.eval_whole_split, or evaluate(batches=None)).
OUT/scores.json holds the scores; OUT/predictions.jsonl one line per scored sample (id, shard, key,
generated, references, cider_d), for metrics computed from the captions elsewhere (concept accuracy).
Where run.eval_shards is not set, or shares shards with data.shards, the scores are on training
data: they are then labelled so (split "training data", `train_loss`, not `val_loss`) in the
result, scores.json, the page and a WARNING, never passed off as validation. Every eval appends its
scores with the checkpoint's step to RUN/eval/history.jsonl, so the page's CIDEr-D and eval-loss
curves grow as a run's checkpoints are evaluated."""

from __future__ import annotations

import json
import logging
import os
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from tqdm import tqdm

from manifests.manifest import MANIFEST_NAME, read_manifest
from manifests.storage import atomic_write_bytes
from trainers.build import build_model
from trainers.captioner import Captioner
from trainers.checkpoint import CheckpointError, checkpoint_problem, latest_checkpoint, load_weights
from trainers.cider import cider_d, tokenize
from trainers.config import TrainConfig, config_to_dict
from trainers.data import (TaskBatches, apply_storage_options, build_index, counts_text, index_references,
                           manifest_shards, shard_urls)
from trainers.eval_page import MAX_ROWS, read_jsonl, render
from trainers.inputs import ModelInputs
from trainers.run_dir import EVAL, EVAL_HISTORY, METRICS
from trainers.tasks import build_task
from trainers.train import cpu_threads_for
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
    urls = shard_urls(config.run.eval_shards, "run.eval_shards")
    try:
        training = {_where(u) for u in shard_urls(config.data.shards)}
    except FileNotFoundError:  # the training shards have moved: nothing to compare with
        training = set()
    shared = [u for u in urls if _where(u) in training]
    # The same shards elsewhere (a published copy of the training run): two manifests list their sha256s.
    held, trained = _shard_digests(config.run.eval_shards), _shard_digests(config.data.shards)
    shared += [u for digest, u in sorted(held.items()) if digest in trained and u not in shared]
    if shared:
        return "training data", config.run.eval_shards, urls, (
            f"{len(shared)} of the {len(urls)} shards of run.eval_shards are also training shards (data.shards), "
            f"e.g. {shared[0]}: these scores are on TRAINING data, not held out")
    return "validation", config.run.eval_shards, urls, None


def _shard_digests(spec: str) -> dict[str, str]:
    """sha256 -> shard URL, when `spec` is a run's manifest.json (else nothing: globs are not hashed)."""
    if not spec.endswith(MANIFEST_NAME):
        return {}
    root = spec.rsplit("/", 1)[0]
    try:
        return {s.sha256: f"{root}/{s.name}" for s in read_manifest(root).shards}
    except (FileNotFoundError, NotADirectoryError):
        return {}


def _where(url: str) -> str:
    """A shard's identity for comparing two specs: local paths resolved (relative, symlinked, `./`)."""
    return url if "://" in url else os.path.realpath(url)


def _run_dir(config: TrainConfig, checkpoint: Path) -> Path:
    """The run a checkpoint belongs to (RUN/checkpoints/step-N), which may not be run.out_dir under --checkpoint."""
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else Path(config.run.out_dir)


PREDICTIONS = "predictions.jsonl"


@torch.no_grad()
def evaluate(config: TrainConfig, checkpoint: str | None = None, batches: int | None = 4, beams: int = 1,
             out_dir: str | None = None, progress: bool = False) -> dict:
    """Scores a checkpoint on the eval split and writes OUT/scores.json, OUT/predictions.jsonl and OUT/index.html.

    batches: that many batches of data.batch_size samples drawn at random (seed run.seed + 1,000,003,
    with replacement); None, or run.eval_whole_split, scores every sample of the split once, in shard
    order. Either way the same checkpoint gives the same scores. The loss is the mean over every
    caption token scored; CIDEr-D uses all of a sample's references (KEY.json's "references", else KEY.txt).
    """
    device = torch.device("cuda" if config.run.device != "cpu" and torch.cuda.is_available() else "cpu")
    with nullcontext() if device.type == "cuda" else cpu_threads_for(config, workers=0):  # it reads in this process
        return _evaluate(config, device, checkpoint, batches, beams, out_dir, progress)


def _evaluate(config: TrainConfig, device: torch.device, checkpoint: str | None, batches: int | None, beams: int,
              out_dir: str | None, progress: bool) -> dict:
    whole = batches is None or config.run.eval_whole_split
    path = Path(checkpoint) if checkpoint else latest_checkpoint(config.run.out_dir)
    if checkpoint and (problem := checkpoint_problem(path)):
        raise CheckpointError(f"{path} cannot be used: {problem}")
    if path is None:
        raise FileNotFoundError(f"no checkpoint in {config.run.out_dir}/checkpoints; train first or pass --checkpoint")
    state = json.loads((path / "state.json").read_text())
    apply_storage_options([config.data.shards, config.run.eval_shards], config.data.storage_options)
    split, shards, urls, warning = eval_split(config)  # before the models load: a bad path fails in seconds
    if warning:
        log.warning("%s", warning)
    index = build_index(urls, "run.eval_shards" if shards == config.run.eval_shards else "data.shards",
                        expected=manifest_shards(shards), verify=config.data.verify_shards)
    references = index_references(urls)
    model, trainable, tokenizer, preprocess = build_model(config)
    load_weights(path, trainable)
    model.to(device).eval()
    task = build_task(config, tokenizer, preprocess)
    if not hasattr(task, "prompts"):
        raise ValueError(f"vlcurate eval scores captions; data.task {config.data.task!r} has no prompts to caption")
    data = TaskBatches(index, task, config.data.batch_size, seed=config.run.seed + 1_000_003, keep_raw=True,
                       references=references, storage_options=config.data.storage_options)
    if whole:
        chunks, total = data.in_order(), -(-index.total // config.data.batch_size)
    else:
        chunks, total = (data.batch(b) for b in range(batches)), batches
    loss_sum, loss_tokens, skipped, first_skip, reasons = 0.0, 0, 0, None, {}
    refs, cands, rows, predictions = {}, {}, [], []
    for b, batch in enumerate(tqdm(chunks, total=total, desc="eval", unit="batch", disable=not progress,
                                   dynamic_ncols=True)):
        skipped += batch["skipped"]
        first_skip = first_skip or batch["first_skip"]
        for reason, n in batch["skipped_reasons"].items():
            reasons[reason] = reasons.get(reason, 0) + n
        if batch["inputs"] is None:  # every sample of this chunk was unusable
            continue
        inputs = batch["inputs"].to(device)
        tokens = int(inputs.loss_mask.sum())
        loss_sum += float(model(inputs)) * tokens  # the batch's mean over its caption tokens
        loss_tokens += tokens
        prompts = task.prompts(batch["inputs"].pixels).to(device)
        captions = captions_for(model, tokenizer, prompts, config.data.max_caption_tokens, beams)
        for j, (caption, record, (shard, _)) in enumerate(zip(captions, batch["records"], batch["where"])):
            # A drawn batch may hold a sample twice: its ids are positions; the whole split's, samples.
            sample_id = f"{shard}/{record.key}" if whole else f"{b}-{j}"
            references_ = record.references or [record.text]
            refs[sample_id], cands[sample_id] = [tokenize(r) for r in references_], tokenize(caption)
            predictions.append({"id": sample_id, "shard": index.urls[shard], "key": record.key,
                                "generated": caption, "references": references_})
            rows.append({"key": sample_id, "generated": caption, "references": references_,
                         "image": record.image_bytes[0] if len(rows) < MAX_ROWS else b""})
    if not rows:
        raise ValueError(f"no sample of {shards} could be scored ({skipped} skipped; first: {first_skip or 'none'})")
    if skipped:
        log.warning("eval: %d sample(s) could not be used and were left out (%s; first: %s)", skipped,
                    counts_text(reasons), first_skip)
    cider, per = cider_d(refs, cands)
    loss = loss_sum / max(loss_tokens, 1)
    result = {"checkpoint": str(path), "step": state["step"], "split": split, "shards": shards,
              "val_loss" if split == "validation" else "train_loss": loss, "cider_d": cider,
              "samples": len(rows), "beams": beams, "whole_split": whole, "skipped": skipped,
              "skipped_reasons": reasons, "not_pairs": index.left_out,  # the split's records eval could not use
              "references_per_sample": sum(len(r) for r in refs.values()) / len(refs), "predictions": PREDICTIONS}
    if warning:
        result["warning"] = warning
    run = _run_dir(config, path)
    out = Path(out_dir) if out_dir else run / EVAL / path.name
    out.mkdir(parents=True, exist_ok=True)
    # Each file whole or absent (temporary + rename), and the history line only once the scores are
    # there: an interrupted eval used to leave a history line without outputs, one more per rerun.
    atomic_write_bytes(str(out / PREDICTIONS), "".join(
        json.dumps({**row, "cider_d": per[row["id"]]}, ensure_ascii=False) + "\n" for row in predictions).encode())
    atomic_write_bytes(str(out / "scores.json"), json.dumps(result, indent=2).encode())
    _record(run, {**{k: result[k] for k in ("step", "checkpoint", "split", "shards", "cider_d", "samples", "beams",
                                             "whole_split")},
                  "loss": loss, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    run_config, note = _run_config(config, state, path)
    page = render(result, rows, per, run_config, note, read_jsonl(run / METRICS), read_jsonl(run / EVAL / EVAL_HISTORY))
    atomic_write_bytes(str(out / "index.html"), page.encode("utf-8"))
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
