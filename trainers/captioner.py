"""PaLM2-VAdapter stage 1: the tiny LM trained as a captioning decoder over an attentional pooler
on the frozen ViT. Its weights then initialise the tiny LM inside the stage-2 VAdapter."""

from __future__ import annotations

import torch
from torch import nn

from trainers.decode import beam_search, greedy
from trainers.inputs import ModelInputs, Spliced, scored, splice, token_loss
from trainers.layers import Attention
from trainers.tiny_lm import TinyLM


class AttentionalPooler(nn.Module):
    """Learned queries cross-attend to the vision tokens, CoCa-style: (B, N, Dv) -> (B, Q, width).
    Unlike open_clip's AttentionalPooler the queries are not normed and are added back (a residual)
    before the final LayerNorm."""

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

    def embed_inputs(self, inputs: ModelInputs) -> Spliced:
        """Pooled visual tokens spliced into the tiny LM's token embeddings (stage 1's task has no
        prompt: [visual ; caption])."""
        return splice(self.tiny_lm.token_embedding(inputs.ids), self.pooler(self.vision(inputs.pixels)), inputs)

    def forward(self, inputs: ModelInputs) -> torch.Tensor:
        spliced = self.embed_inputs(inputs)
        hidden = self.tiny_lm.encode(spliced.embeds, padding_mask=spliced.mask.bool())
        # Only the hidden states that predict loss tokens go through the LM head.
        return token_loss(self.tiny_lm.logits(scored(hidden, inputs, spliced.text_positions)), inputs)

    @torch.no_grad()
    def generate(self, prompts: ModelInputs, max_new_tokens: int, eos_id: int, beams: int = 1) -> list[list[int]]:
        """Token ids continuing each prompt (unpadded: a task's `prompts`), from the tiny LM itself
        (greedy when beams == 1), EOS not included."""
        prefix = self.embed_inputs(prompts).embeds

        def next_logprobs(rows: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
            inputs = torch.cat([prefix[rows], self.tiny_lm.token_embedding(ids)], dim=1)
            return self.tiny_lm.logits(self.tiny_lm.encode(inputs)[:, -1]).log_softmax(-1)

        batch, device = prompts.batch_size, prefix.device
        if beams == 1:
            return greedy(next_logprobs, batch, max_new_tokens, eos_id, device)
        return beam_search(next_logprobs, batch, beams, max_new_tokens, eos_id, device=device)
