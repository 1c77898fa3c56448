"""Evaluation: validation loss, greedy or beam-search captions, CIDEr-D against the references,
and an HTML page of images beside their generated and reference captions (`vlcurate eval`).
Stage 2 generates with transformers' `generate` on the frozen LLM; the stage-1 captioner with
trainers/decode.py over its own tiny LM."""

from __future__ import annotations

import base64
import html
import io
import json
import logging
from pathlib import Path

import torch

from trainers.build import build_model
from trainers.captioner import Captioner
from trainers.checkpoint import CheckpointError, checkpoint_problem, latest_checkpoint, load_weights
from trainers.cider import cider_d, tokenize
from trainers.config import TrainConfig
from trainers.data import TaskBatches, build_index, shard_urls
from trainers.inputs import ModelInputs
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


@torch.no_grad()
def evaluate(config: TrainConfig, checkpoint: str | None = None, batches: int = 4, beams: int = 1,
             out_dir: str | None = None) -> dict:
    device = torch.device("cuda" if config.run.device != "cpu" and torch.cuda.is_available() else "cpu")
    model, trainable, tokenizer, preprocess = build_model(config)
    path = Path(checkpoint) if checkpoint else latest_checkpoint(config.run.out_dir)
    if checkpoint and (problem := checkpoint_problem(path)):
        raise CheckpointError(f"{path} cannot be used: {problem}")
    if path is None:
        raise FileNotFoundError(f"no checkpoint in {config.run.out_dir}/checkpoints; train first or pass --checkpoint")
    load_weights(path, trainable)
    model.to(device).eval()
    shards = config.run.eval_shards or config.data.shards
    index = build_index(shard_urls(shards))
    task = build_task(config, tokenizer, preprocess)
    if not hasattr(task, "prompts"):
        raise ValueError(f"vlcurate eval scores captions; data.task {config.data.task!r} has no prompts to caption")
    data = TaskBatches(index, task, config.data.batch_size, seed=config.run.seed + 1_000_003, keep_raw=True)
    losses, refs, cands, rows = [], {}, {}, []
    for b in range(batches):
        batch = data.batch(b)
        inputs = batch["inputs"].to(device)
        losses.append(float(model(inputs)))
        prompts = task.prompts(batch["inputs"].pixels).to(device)
        captions = captions_for(model, tokenizer, prompts, config.data.max_caption_tokens, beams)
        for j, (caption, record) in enumerate(zip(captions, batch["records"])):
            key = f"{b}-{j}"
            refs[key], cands[key] = [tokenize(record.text)], tokenize(caption)
            rows.append({"key": key, "generated": caption, "reference": record.text, "image": record.image_bytes[0]})
    cider, per = cider_d(refs, cands)
    result = {"checkpoint": str(path), "val_loss": sum(losses) / len(losses), "cider_d": cider,
              "samples": len(rows), "beams": beams}
    out = Path(out_dir or Path(config.run.out_dir) / "eval" / path.name)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scores.json").write_text(json.dumps(result, indent=2))
    (out / "index.html").write_text(_page(result, rows, per), encoding="utf-8")
    log.info("eval %s: val loss %.4f, CIDEr-D %.3f on %d samples -> %s", path.name, result["val_loss"], cider,
             len(rows), out)
    return result


def _page(result: dict, rows: list[dict], per: dict[str, float]) -> str:
    cells = []
    for r in rows[:64]:
        data = base64.b64encode(r["image"]).decode("ascii")
        cells.append(f"<tr><td><img src='data:image/jpeg;base64,{data}' width=128></td>"
                     f"<td>{html.escape(r['generated'])}</td><td>{html.escape(r['reference'])}</td>"
                     f"<td>{per[r['key']]:.3f}</td></tr>")
    head = html.escape(json.dumps({k: v for k, v in result.items()}))
    return ("<!doctype html><meta charset='utf-8'><title>vlcurate eval</title>"
            f"<p>{head}</p><table border=1 cellpadding=4><tr><th>image</th><th>generated</th>"
            f"<th>reference</th><th>CIDEr-D</th></tr>{''.join(cells)}</table>")
