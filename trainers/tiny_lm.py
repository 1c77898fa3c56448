"""The tiny causal LM of PaLM2-VAdapter: a small decoder-only transformer (nanoGPT-style).

Stage 1 uses it as a captioning decoder: [pooled visual tokens ; caption tokens] -> next token.
Stage 2 reuses its blocks inside the adapter, over the perceiver's visual queries (`encode`), and
its token embedding / LM head go unused.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from trainers.layers import Block


class TinyLM(nn.Module):
    def __init__(self, vocab_size: int, width: int = 256, layers: int = 4, heads: int = 4, max_len: int = 256):
        super().__init__()
        self.width, self.max_len = width, max_len
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.position_embedding = nn.Parameter(torch.zeros(max_len, width))
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.ln_final = nn.LayerNorm(width)
        self.lm_head = nn.Linear(width, vocab_size, bias=False)
        self.lm_head.weight = self.token_embedding.weight  # tied, as in GPT-2
        self.activation_checkpointing = False
        nn.init.normal_(self.position_embedding, std=0.01)
        with torch.no_grad():
            # GPT-2's 0.02 scale: nn.Embedding's N(0, 1) through the tied head gives logits of std
            # ~sqrt(width), an initial loss of ~27 instead of ~ln(vocab). Scaled rather than
            # redrawn, so every later parameter draws the same random numbers as before.
            self.token_embedding.weight.mul_(0.02)

    def encode(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Causal transformer over input embeddings (B, T, width) -> hidden states (B, T, width)."""
        if x.shape[1] > self.max_len:
            # TrainConfig.validate refuses such configs at load; this guards code that builds a TinyLM directly.
            raise ValueError(f"a sequence of {x.shape[1]} exceeds the tiny LM's {self.max_len} positions "
                             f"(adapter.tiny_lm.max_len)")
        x = x + self.position_embedding[: x.shape[1]]
        for block in self.blocks:
            if self.activation_checkpointing and self.training:
                x = checkpoint(block, x, True, padding_mask, use_reentrant=False)
            else:
                x = block(x, causal=True, padding_mask=padding_mask)
        return self.ln_final(x)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm_head(hidden)
