"""The adapter VLM: frozen vision encoder -> trainable adapter -> frozen LLM, fed with
inputs_embeds = [prompt before ; visual tokens ; prompt after ; caption], loss on caption tokens only.

The prompt is PaLM2-VAdapter's "Describe the following: <visual> :" by default; `<visual>` marks
where the visual tokens go.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

VISUAL = "<visual>"
DEFAULT_PROMPT = f"Describe the following: {VISUAL} :"


def split_prompt(prompt: str) -> tuple[str, str]:
    if prompt.count(VISUAL) != 1:
        raise ValueError(f"the prompt must contain {VISUAL} exactly once: {prompt!r}")
    before, after = prompt.split(VISUAL)
    return before.rstrip(" "), after


class AdapterVLM(nn.Module):
    def __init__(self, vision: nn.Module, adapter: nn.Module, llm: nn.Module, prompt: str = DEFAULT_PROMPT):
        super().__init__()
        self.vision, self.adapter, self.llm = vision, adapter, llm
        before, after = split_prompt(prompt)
        tok = llm.tokenizer
        self.register_buffer("prompt_before", torch.tensor(tok(before, add_special_tokens=False)["input_ids"]),
                             persistent=False)
        self.register_buffer("prompt_after", torch.tensor(tok(after, add_special_tokens=False)["input_ids"]),
                             persistent=False)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.adapter.parameters() if p.requires_grad]

    def visual_embeds(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.adapter(self.vision(pixels))

    def prefix(self, pixels: torch.Tensor) -> torch.Tensor:
        """[prompt before ; visual ; prompt after] as LLM input embeddings (B, P, D)."""
        visual = self.visual_embeds(pixels)
        b = visual.shape[0]
        before = self.llm.embed(self.prompt_before).unsqueeze(0).expand(b, -1, -1)
        after = self.llm.embed(self.prompt_after).unsqueeze(0).expand(b, -1, -1)
        return torch.cat([before, visual.to(before.dtype), after], dim=1)

    def forward(self, pixels: torch.Tensor, caption_ids: torch.Tensor, caption_mask: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over the caption tokens (caption_mask 1) of the batch."""
        prefix = self.prefix(pixels)
        captions = self.llm.embed(caption_ids)
        inputs = torch.cat([prefix, captions], dim=1)
        mask = torch.cat([torch.ones(prefix.shape[:2], dtype=caption_mask.dtype, device=caption_mask.device),
                          caption_mask], dim=1)
        logits = self.llm(inputs, mask)
        p = prefix.shape[1]
        predicted = logits[:, p - 1 : p - 1 + caption_ids.shape[1]]  # position t predicts token t + 1
        return caption_loss(predicted, caption_ids, caption_mask)


def caption_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    targets = targets.masked_fill(mask == 0, -100)
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)
