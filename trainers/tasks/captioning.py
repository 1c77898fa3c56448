"""Captioning: one image in, its caption out.

The sequence is [prompt before ; <image> ; prompt after ; caption <eos>] with the loss on the
caption tokens only; the default prompt is PaLM2-VAdapter's "Describe the following: <visual> :",
where `<visual>` marks where the image's visual tokens go. The prompt's two halves and the caption
are tokenised apart, so no token ever spans the boundary of the visual tokens.

pad_to "max" (data.pad_to): every training batch is padded to prompt + max_caption_tokens tokens,
its loss columns the whole caption block, so batch shapes never change; "longest" pads to the
batch's longest caption. Padding is masked out of attention and loss: the loss is the same.
"""

from __future__ import annotations

import torch

from trainers.inputs import Example, FixedShape, ModelInputs, collate
from trainers.tasks.base import Record, Task

VISUAL = "<visual>"
DEFAULT_PROMPT = f"Describe the following: {VISUAL} :"


def split_prompt(prompt: str) -> tuple[str, str]:
    if prompt.count(VISUAL) != 1:
        raise ValueError(f"the prompt must contain {VISUAL} exactly once: {prompt!r}")
    before, after = prompt.split(VISUAL)
    return before.rstrip(" "), after


class CaptioningTask(Task):
    name = "captioning"

    def __init__(self, tokenizer, preprocess, prompt: str = DEFAULT_PROMPT, max_caption_tokens: int = 32,
                 pad_to: str = "longest"):
        """pad_to: the trainer passes data.pad_to ("max" by default there)."""
        super().__init__(tokenizer, preprocess)
        before, after = split_prompt(prompt)
        self.before, self.after = self._ids(before), self._ids(after)
        self.max_caption_tokens = max_caption_tokens
        if pad_to == "max":
            prompt_tokens = len(self.before) + len(self.after)
            length = prompt_tokens + max_caption_tokens
            self.shape = FixedShape(length, (prompt_tokens, length), max_images=1)
        elif pad_to != "longest":
            raise ValueError(f"pad_to is 'max' or 'longest', not {pad_to!r}")

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def caption_ids(self, caption: str) -> list[int]:
        """The caption and EOS (the model learns to stop), truncated to max_caption_tokens: a caption
        cut there loses its EOS, so the model is never taught to stop mid-sentence."""
        return self.tokenizer(caption + (self.tokenizer.eos_token or ""), truncation=True,
                              max_length=self.max_caption_tokens, add_special_tokens=False)["input_ids"]

    def encode(self, record: Record) -> Example:
        if len(record.images) != 1:
            raise ValueError(f"captioning takes one image per record, {record.key} has {len(record.images)}")
        caption = self.caption_ids(record.text)
        return self._example(self.preprocess(record.images[0]), caption)

    def prompts(self, pixels: torch.Tensor) -> ModelInputs:
        """The prompt alone for each preprocessed image (N, 3, H, W): the inputs to generate from,
        never padded (generation continues right after the prompt)."""
        return collate([self._example(image, []) for image in pixels], self.tokenizer.pad_token_id)

    def _example(self, image: torch.Tensor, caption: list[int]) -> Example:
        prompt = self.before + self.after
        return Example(ids=prompt + caption, loss_mask=[0] * len(prompt) + [1] * len(caption),
                       images=[image], image_positions=[len(self.before)])
