"""Adapters from vision tokens (B, N, Dv) to LLM input embeddings (B, M, Dllm).

- `linear` (PaliGemma): one projection per token.
- `mlp` (LLaVA-1.5): Linear -> GELU -> Linear.
- `perceiver` (Flamingo): learned queries cross-attend to the vision tokens (and themselves),
  with separate LayerNorms for queries and for keys/values, an FFN per layer, a final LayerNorm.
- `vadapter` (PaLM2-VAdapter): FC -> 1-layer perceiver -> tiny causal LM -> FC to the LLM width.
"""

from __future__ import annotations

import torch
from torch import nn

from trainers.layers import MLP, Attention
from trainers.tiny_lm import TinyLM


class LinearAdapter(nn.Module):
    def __init__(self, vision_width: int, llm_width: int):
        super().__init__()
        self.proj = nn.Linear(vision_width, llm_width)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.proj(tokens)


class MLPAdapter(nn.Module):
    def __init__(self, vision_width: int, llm_width: int):
        super().__init__()
        self.mlp = MLP(vision_width, llm_width, llm_width)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.mlp(tokens)


class PerceiverLayer(nn.Module):
    def __init__(self, width: int, heads: int, mlp_ratio: int = 4):
        super().__init__()
        self.ln_queries = nn.LayerNorm(width)
        self.ln_context = nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.ln_ffn = nn.LayerNorm(width)
        self.ffn = MLP(width, mlp_ratio * width)

    def forward(self, latents: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        q = self.ln_queries(latents)
        # Flamingo: keys/values are the vision tokens and the latents themselves.
        context = torch.cat([self.ln_context(tokens), q], dim=1)
        latents = latents + self.attn(q, context)
        return latents + self.ffn(self.ln_ffn(latents))


class PerceiverResampler(nn.Module):
    """(B, N, width) -> (B, queries, width)."""

    def __init__(self, width: int, layers: int, queries: int, heads: int):
        super().__init__()
        self.latents = nn.Parameter(torch.randn(queries, width) * width ** -0.5)
        self.layers = nn.ModuleList(PerceiverLayer(width, heads) for _ in range(layers))
        self.ln_out = nn.LayerNorm(width)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        latents = self.latents.unsqueeze(0).expand(tokens.shape[0], -1, -1)
        for layer in self.layers:
            latents = layer(latents, tokens)
        return self.ln_out(latents)


class PerceiverAdapter(nn.Module):
    """Flamingo-style baseline: project to the resampler width, resample, project to the LLM width."""

    def __init__(self, vision_width: int, llm_width: int, width: int, layers: int, queries: int, heads: int):
        super().__init__()
        self.proj_in = nn.Linear(vision_width, width)
        self.resampler = PerceiverResampler(width, layers, queries, heads)
        self.proj_out = nn.Linear(width, llm_width)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.proj_out(self.resampler(self.proj_in(tokens)))


class VAdapter(nn.Module):
    """PaLM2-VAdapter: FC -> 1-layer perceiver -> tiny LM (over the visual queries) -> FC."""

    def __init__(self, vision_width: int, llm_width: int, tiny_lm: TinyLM, queries: int, heads: int):
        super().__init__()
        width = tiny_lm.width
        self.proj_in = nn.Linear(vision_width, width)
        self.resampler = PerceiverResampler(width, layers=1, queries=queries, heads=heads)
        self.tiny_lm = tiny_lm
        # In the adapter the tiny LM reads visual queries, never tokens: its (tied) embedding and LM
        # head are kept only so a stage-1 state dict loads as is, and are not trained or counted.
        tiny_lm.token_embedding.requires_grad_(False)
        self.proj_out = nn.Linear(width, llm_width)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        queries = self.resampler(self.proj_in(tokens))
        return self.proj_out(self.tiny_lm.encode(queries))
