"""The frozen vision encoder: an open_clip visual tower that returns its patch tokens.

Weights load exactly as the CLIPScore stage loads them (tag, checkpoint, or config dir +
checkpoint). `random_init` is an explicit opt-in for throughput experiments only; it is written into
every checkpoint's config so a model trained on random features cannot pass for a real one.
"""

from __future__ import annotations

import logging
import os

import torch
from torch import nn

from filters.clip_model import ClipSpec, ClipWeightsError, register_configs, resolve_checkpoint, weights_problem

log = logging.getLogger("vlcurate")


class VisionEncoder(nn.Module):
    def __init__(self, name: str, pretrained: str | None = None, config_dir: str | None = None,
                 random_init: bool = False, freeze: bool = True):
        super().__init__()
        import open_clip

        spec = ClipSpec(name, pretrained, config_dir, stage="vision")
        try:
            if random_init:
                register_configs(spec)
                log.warning("vision encoder %s has RANDOM weights (vision.random_init: true): for timing only", name)
                checkpoint = None
            else:
                checkpoint = resolve_checkpoint(spec)
        except ClipWeightsError as err:
            # filters/clip_model.py names a recipe's keys (`STAGE.model.pretrained`); the trainer's
            # config has them directly under `vision:` (vision.pretrained, vision.config_dir, vision.name).
            raise ClipWeightsError(str(err).replace(f"{spec.stage}.model.", f"{spec.stage}.")) from None
        try:
            model, _, self.preprocess = open_clip.create_model_and_transforms(name, pretrained=checkpoint,
                                                                              weights_only=True)
        except Exception as err:  # a file of another model, or not a checkpoint: one line, before training
            if checkpoint is None or not os.path.isfile(checkpoint):
                raise
            raise ClipWeightsError(f"vision.pretrained {checkpoint} {weights_problem(err, name)}") from None
        self.visual = model.visual
        self.visual.output_tokens = True
        self.tokens, self.width = self._token_shape()  # patch tokens per image, their width
        self.frozen = freeze
        if freeze:
            self.visual.requires_grad_(False)
            self.visual.eval()

    def _token_shape(self) -> tuple[int, int]:
        size = self.visual.image_size
        size = size if isinstance(size, tuple) else (size, size)
        with torch.no_grad():
            _, tokens = self.visual(torch.zeros(1, 3, *size))
        return tokens.shape[1], tokens.shape[2]

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:
            self.visual.eval()  # frozen means no dropout/batch-stat changes either
        return self

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> patch tokens (B, N, width)."""
        if self.frozen:
            with torch.no_grad():
                return self.visual(pixels)[1]
        return self.visual(pixels)[1]
