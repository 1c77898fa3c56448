"""PaLM2-VAdapter stage 1: the tiny LM trained as a captioning decoder over an attentional pooler
on the frozen ViT. Its weights then initialise the tiny LM inside the stage-2 VAdapter."""

from __future__ import annotations

import torch
from torch import nn

from trainers.decode import beam_search, greedy
from trainers.layers import Attention
from trainers.tiny_lm import TinyLM
from trainers.vlm import caption_loss


class AttentionalPooler(nn.Module):
    """Learned queries cross-attend to the vision tokens (CoCa's pooler): (B, N, Dv) -> (B, Q, width)."""

    def __init__(self, vision_width: int, width: int, queries: int, heads: int):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(queries, width) * width ** -0.5)
        self.ln_context = nn.LayerNorm(vision_width)
        self.attn = Attention(width, heads, kv_width=vision_width)
        self.ln_out = nn.LayerNorm(width)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        q = self.queries.unsqueeze(0).expand(tokens.shape[0], -1, -1)
        return self.ln_out(q + self.attn(q, self.ln_context(tokens)))


class Captioner(nn.Module):
    def __init__(self, vision: nn.Module, tiny_lm: TinyLM, queries: int, heads: int):
        super().__init__()
        self.vision, self.tiny_lm = vision, tiny_lm
        self.pooler = AttentionalPooler(vision.width, tiny_lm.width, queries, heads)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for m in (self.pooler, self.tiny_lm) for p in m.parameters() if p.requires_grad]

    def forward(self, pixels: torch.Tensor, caption_ids: torch.Tensor, caption_mask: torch.Tensor) -> torch.Tensor:
        visual = self.pooler(self.vision(pixels))
        inputs = torch.cat([visual, self.tiny_lm.token_embedding(caption_ids)], dim=1)
        padding = torch.cat([torch.ones(visual.shape[:2], dtype=torch.bool, device=visual.device),
                             caption_mask.bool()], dim=1)
        hidden = self.tiny_lm.encode(inputs, padding_mask=padding)
        q = visual.shape[1]
        logits = self.tiny_lm.logits(hidden[:, q - 1 : q - 1 + caption_ids.shape[1]])
        return caption_loss(logits, caption_ids, caption_mask)

    @torch.no_grad()
    def generate(self, pixels: torch.Tensor, max_new_tokens: int, eos_id: int, beams: int = 1) -> list[list[int]]:
        """Caption token ids from the tiny LM itself (greedy when beams == 1), EOS not included."""
        visual = self.pooler(self.vision(pixels))

        def next_logprobs(rows: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
            inputs = torch.cat([visual[rows], self.tiny_lm.token_embedding(ids)], dim=1)
            return self.tiny_lm.logits(self.tiny_lm.encode(inputs)[:, -1]).log_softmax(-1)

        if beams == 1:
            return greedy(next_logprobs, len(pixels), max_new_tokens, eos_id, pixels.device)
        return beam_search(next_logprobs, len(pixels), beams, max_new_tokens, eos_id, device=pixels.device)
