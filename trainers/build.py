"""Config -> model: the vision encoder, the LLM (stage 2), the adapter or the stage-1 captioner."""

from __future__ import annotations

import logging
import os

import torch
from torch import nn

from trainers.adapters import LinearAdapter, MLPAdapter, PerceiverAdapter, VAdapter
from trainers.captioner import Captioner
from trainers.checkpoint import latest_checkpoint, load_weights
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
        if a.init_from:
            _init_from_stage_one(adapter, a.init_from)
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


def _init_from_stage_one(adapter: VAdapter, run_dir: str) -> None:
    """Stage 2 starts from stage 1's tiny LM (PaLM2-VAdapter's progressive training)."""
    path = latest_checkpoint(run_dir)
    if path is None:
        raise FileNotFoundError(f"adapter.init_from {run_dir!r} holds no checkpoint (run stage 1 first)")
    load_weights(path, adapter.tiny_lm, prefix="tiny_lm.")  # stage 1 saved {"pooler", "tiny_lm"}
    log.info("vadapter tiny LM initialised from stage 1 checkpoint %s", path)

