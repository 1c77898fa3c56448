"""Tasks: what the model reads and what it learns to predict, from a shard record (trainers/tasks/base.py)."""

from __future__ import annotations

from trainers.config import TrainConfig
from trainers.tasks.base import Record, Task
from trainers.tasks.captioning import VISUAL, CaptioningTask

__all__ = ["Record", "Task", "CaptioningTask", "build_task"]


def build_task(config: TrainConfig, tokenizer, preprocess) -> Task:
    if config.data.task == "captioning":
        # Stage 1 (PaLM2-VAdapter) trains the tiny LM to caption from the pooled image alone: no prompt.
        prompt = config.data.prompt if config.run.stage == "vlm" else VISUAL
        return CaptioningTask(tokenizer, preprocess, prompt, config.data.max_caption_tokens, config.data.pad_to)
    raise ValueError(f"data.task {config.data.task!r} is not implemented")
