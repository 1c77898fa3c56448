"""Transformer building blocks shared by the adapters and the tiny LM: attention (self or cross),
a GELU MLP, and a pre-norm block. Attention is torch's scaled_dot_product_attention, which picks
flash/memory-efficient kernels on CUDA and a plain implementation on CPU."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    def __init__(self, width: int, heads: int, kv_width: int | None = None):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.q = nn.Linear(width, width, bias=False)
        self.kv = nn.Linear(kv_width or width, 2 * width, bias=False)
        self.out = nn.Linear(width, width, bias=False)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, causal: bool = False,
                key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, Tq, W); context: (B, Tk, Wkv) or None for self-attention; key_padding_mask: (B, Tk) True = keep."""
        context = x if context is None else context
        b, tq, w = x.shape
        q = self.q(x).view(b, tq, self.heads, w // self.heads).transpose(1, 2)
        k, v = self.kv(context).view(b, context.shape[1], 2, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        mask = None
        if key_padding_mask is not None:
            mask = key_padding_mask[:, None, None, :]
            if causal:
                mask = mask & torch.ones(tq, context.shape[1], dtype=torch.bool, device=x.device).tril()
            causal = False
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
        return self.out(y.transpose(1, 2).reshape(b, tq, w))


class MLP(nn.Module):
    def __init__(self, width: int, hidden: int, out: int | None = None):
        super().__init__()
        self.fc = nn.Linear(width, hidden)
        self.proj = nn.Linear(hidden, out or width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(LN(x)); x + mlp(LN(x))."""

    def __init__(self, width: int, heads: int, mlp_ratio: int = 4):
        super().__init__()
        self.ln_attn = nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.ln_mlp = nn.LayerNorm(width)
        self.mlp = MLP(width, mlp_ratio * width)

    def forward(self, x: torch.Tensor, causal: bool = True, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_attn(x), causal=causal, key_padding_mask=padding_mask)
        return x + self.mlp(self.ln_mlp(x))
