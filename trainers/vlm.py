"""The adapter VLM: frozen vision encoder -> trainable adapter -> frozen LLM.

The LLM is fed inputs_embeds: the batch's token embeddings with each image's visual tokens spliced
in where its task placed it (trainers/inputs.py); for captioning that is
[prompt before ; visual tokens ; prompt after ; caption], loss on the caption tokens only.
"""

from __future__ import annotations

import torch
from torch import nn

from trainers.inputs import ModelInputs, Spliced, scored, splice, token_loss


class AdapterVLM(nn.Module):
    def __init__(self, vision: nn.Module, adapter: nn.Module, llm: nn.Module):
        super().__init__()
        self.vision, self.adapter, self.llm = vision, adapter, llm

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.adapter.parameters() if p.requires_grad]

    def visual_embeds(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, Q, D): the adapter's visual tokens per image, in the LLM's width."""
        return self.adapter(self.vision(pixels))

    def embed_inputs(self, inputs: ModelInputs) -> Spliced:
        return splice(self.llm.embed(inputs.ids), self.visual_embeds(inputs.pixels), inputs)

    def forward(self, inputs: ModelInputs) -> torch.Tensor:
        """Mean cross-entropy over the batch's loss tokens."""
        spliced = self.embed_inputs(inputs)
        # Logits of the scored positions only (the caption's): trainers/llm.py FrozenLLM.logits_at.
        logits = self.llm.logits_at(spliced.embeds, spliced.mask,
                                    lambda outputs: scored(outputs, inputs, spliced.text_positions))
        return token_loss(logits, inputs)
