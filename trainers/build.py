"""Config -> model: the vision encoder, the LLM (stage 2), the adapter or the stage-1 captioner."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch
from torch import nn

from trainers.adapters import LinearAdapter, MLPAdapter, PerceiverAdapter, VAdapter
from trainers.captioner import Captioner
from trainers.checkpoint import CheckpointError, latest_checkpoint, load_weights
from trainers.config import ConfigError, TrainConfig
from trainers.lengths import llm_positions, llm_problem
from trainers.llm import FrozenLLM, load_tokenizer
from trainers.tasks.captioning import split_prompt
from trainers.tiny_lm import TinyLM
from trainers.vision import VisionEncoder
from trainers.vlm import AdapterVLM

log = logging.getLogger("vlcurate")


def build_model(config: TrainConfig):
    """(model, trainable module for checkpoints, tokenizer, image preprocess)."""
    v, a = config.vision, config.adapter
    stage_one = _stage_one_checkpoint(config) if config.run.stage == "vlm" and a.kind == "vadapter" and a.init_from \
        else None  # checked before the models load
    vision = VisionEncoder(v.name, v.pretrained, v.config_dir, random_init=v.random_init)
    if config.run.stage == "captioner":
        # Stage 1 uses the LLM's tokenizer only: its weights are never loaded (a tokenizer directory will do).
        if not config.llm.path:
            raise ValueError("the captioner needs a tokenizer: set llm.path (its tokenizer is used)")
        tokenizer = load_tokenizer(config.llm.path, config.llm.gguf_file)
        tiny = _tiny_lm(config, len(tokenizer))
        model = Captioner(vision, tiny, a.queries, a.tiny_lm.heads)
        trainable = nn.ModuleDict({"pooler": model.pooler, "tiny_lm": model.tiny_lm})
        return model, trainable, tokenizer, vision.preprocess
    llm = None
    if config.llm.path:
        llm = FrozenLLM(config.llm.path, config.llm.gguf_file, config.llm.dtype, config.llm.random_init,
                        _run_device(config))
    tokenizer = llm.tokenizer if llm is not None else None
    _check_llm_length(config, vision, llm)
    if a.kind == "linear":
        adapter = LinearAdapter(vision.width, llm.width)
    elif a.kind == "mlp":
        adapter = MLPAdapter(vision.width, llm.width)
    elif a.kind == "perceiver":
        adapter = PerceiverAdapter(vision.width, llm.width, a.width, a.layers, a.queries, a.heads)
    else:
        adapter = VAdapter(vision.width, llm.width, _tiny_lm(config, len(tokenizer)), a.queries, a.tiny_lm.heads)
        if stage_one is not None:
            _init_from_stage_one(adapter, stage_one)
    if config.run.activation_checkpointing and isinstance(adapter, VAdapter):
        adapter.tiny_lm.activation_checkpointing = True
    model = AdapterVLM(vision, adapter, llm)
    return model, adapter, tokenizer, vision.preprocess


def _check_llm_length(config: TrainConfig, vision: VisionEncoder, llm: FrozenLLM) -> None:
    """Before any weights train: [prompt ; visual tokens ; caption] must fit the LLM's positions."""
    try:
        before, after = split_prompt(config.data.prompt)
    except ValueError as err:
        raise ConfigError(f"data.prompt: {err}") from None
    prompt = sum(len(llm.tokenizer(part, add_special_tokens=False)["input_ids"]) for part in (before, after))
    if problem := llm_problem(config, prompt, vision.tokens, llm_positions(llm.model.config)):
        raise ConfigError(problem)


def _run_device(config: TrainConfig) -> str:
    """The device the run trains on, as trainers/train.py picks it (this process's GPU under torchrun)."""
    if config.run.device == "cpu" or not torch.cuda.is_available():
        return "cpu"
    return f"cuda:{os.environ.get('LOCAL_RANK', 0)}"


def _tiny_lm(config: TrainConfig, vocab_size: int) -> TinyLM:
    t = config.adapter.tiny_lm
    return TinyLM(vocab_size, t.width, t.layers, t.heads, t.max_len)


def _stage_one_checkpoint(config: TrainConfig) -> Path:
    """adapter.init_from's latest checkpoint, checked against this run before any model loads: its tiny
    LM's vocabulary must be this run's tokenizer's (a stage 1 trained with another tokenizer failed in
    load_state_dict after the LLM had loaded), and its shape this run's adapter.tiny_lm."""
    from safetensors import safe_open

    run_dir = config.adapter.init_from
    path = latest_checkpoint(run_dir)
    if path is None:
        raise FileNotFoundError(f"adapter.init_from {run_dir!r} holds no checkpoint (run stage 1 first)")
    saved = json.loads((path / "state.json").read_text()).get("config", {})
    with safe_open(str(path / "trainable.safetensors"), "pt") as f:
        shapes = {k: f.get_slice(k).get_shape() for k in f.keys() if k.startswith("tiny_lm.")}
    embedding = shapes.get("tiny_lm.token_embedding.weight")
    if embedding is None:
        raise CheckpointError(f"adapter.init_from {run_dir!r}: {path.name} holds no tiny LM (is it a stage-1 "
                              "run, run.stage: captioner?)")
    vocab = len(load_tokenizer(config.llm.path, config.llm.gguf_file))
    if embedding[0] != vocab:
        source = saved.get("llm", {}).get("path", "?")
        raise CheckpointError(f"adapter.init_from {run_dir!r}: its tiny LM has a vocabulary of {embedding[0]:,} "
                              f"tokens (stage 1's llm.path {source!r}), this run's tokenizer (llm.path "
                              f"{config.llm.path!r}) has {vocab:,}: train stage 1 with this run's tokenizer")
    before, now = saved.get("adapter", {}).get("tiny_lm", {}), config.adapter.tiny_lm.model_dump()
    # max_len too: the position table has max_len rows, so stage 2 keeps stage 1's value.
    differ = [f"adapter.tiny_lm.{k}: {before[k]} in stage 1, {now[k]} here" for k in now
              if k in before and before[k] != now[k]]
    if differ:
        raise CheckpointError(f"adapter.init_from {run_dir!r}: the tiny LM's shape differs ({'; '.join(differ)}); "
                              "stage 2 takes stage 1's adapter.tiny_lm as it was")
    return path


def _init_from_stage_one(adapter: VAdapter, path: Path) -> None:
    """Stage 2 starts from stage 1's tiny LM (PaLM2-VAdapter's progressive training)."""
    load_weights(path, adapter.tiny_lm, prefix="tiny_lm.")  # stage 1 saved {"pooler", "tiny_lm"}
    log.info("vadapter tiny LM initialised from stage 1 checkpoint %s", path)

