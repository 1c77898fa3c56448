"""A small captioning batch whose samples differ in every way the model's layout code cares about:
caption lengths (padding), images per sample (an empty image slot), and so text positions."""

from __future__ import annotations

import torch

from trainers.inputs import Example, ModelInputs, collate

CAPTIONS = ["a red circle on a blue background", "a star", "the large green square"]


def mixed_caption_batch(tokenizer, images: int, prompt: bool = True) -> ModelInputs:
    """`images` images per sample except the second sample's one; with `prompt`, stage 2's prompt
    around them (stage 1 captions from the image alone)."""
    def ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    before, after = (ids("describe the following :"), ids(":")) if prompt else ([], [])
    generator = torch.Generator().manual_seed(images)
    examples = []
    for i, caption in enumerate(CAPTIONS):
        n = 1 if i == 1 else images
        caption = ids(caption) + [tokenizer.eos_token_id]
        examples.append(Example(ids=before + after + caption, loss_mask=[0] * len(before + after) + [1] * len(caption),
                                images=list(torch.randn(n, 3, 64, 64, generator=generator)),
                                image_positions=[len(before), len(before + after)][:n]))
    return collate(examples, tokenizer.pad_token_id)
