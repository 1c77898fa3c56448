"""What a task hands the model: token ids with masks, and images placed in the token sequence.

A sample is a token sequence plus any number of images, each at a position in that sequence: the
image's visual tokens go right before the token at that position (== len(ids): after the last
token). Captioning: ids [prompt before ; prompt after ; caption <eos>] with one image at
len(prompt before). Interleaved documents: several images at their places in the text.

The model embeds the tokens, turns every image into the same number of visual tokens, and
`splice`s both into one sequence of embeddings (LLaVA / nanoVLM style). The loss needs to know where
each token ended up, since the output predicting token t sits one position before it: `scored`
picks those outputs, `token_loss` scores them. Layouts are computed with tensor ops from the batch
(no Python loop over samples, no host sync), so the same code runs under torch.compile and DDP.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import NamedTuple

import torch
import torch.nn.functional as F


@dataclass
class Example:
    """One sample as its task encodes it."""

    ids: list[int]
    loss_mask: list[int]  # 1: a token the model is trained to predict
    images: list[torch.Tensor]  # preprocessed (3, H, W), in sequence order
    image_positions: list[int]  # per image: the index in ids its visual tokens go before

    def __post_init__(self):
        if len(self.loss_mask) != len(self.ids) or len(self.image_positions) != len(self.images):
            raise ValueError("an Example needs one loss_mask entry per token and one position per image")
        if self.image_positions != sorted(self.image_positions) or any(not 0 <= p <= len(self.ids)
                                                                      for p in self.image_positions):
            raise ValueError(f"image positions must be in sequence order, within 0..{len(self.ids)}: "
                             f"{self.image_positions}")
        if self.loss_mask[:1] == [1] and (not self.image_positions or self.image_positions[0] != 0):
            raise ValueError("the loss cannot count the first token: nothing before it predicts it")


@dataclass
class ModelInputs:
    """A batch of B samples right-padded to T tokens, with the N images of all samples."""

    ids: torch.Tensor  # (B, T) token ids, padding = the tokenizer's pad id
    attention_mask: torch.Tensor  # (B, T) 1: a real token, 0: padding
    loss_mask: torch.Tensor  # (B, T) 1: the token counts in the loss
    pixels: torch.Tensor  # (N, 3, H, W) the images, sample by sample, each sample's in sequence order
    image_sample: torch.Tensor  # (N,) which sample each image belongs to
    image_position: torch.Tensor  # (N,) where in that sample's ids its visual tokens go
    # Plain ints, known when the batch is built, so the model never waits on the device for them
    # (torch.compile specialises on them: a task's FixedShape keeps them the same for every batch):
    max_images: int  # most images in one sample: the spliced length is T + max_images * visual tokens
    loss_columns: tuple[int, int]  # token columns [first, last + 1) that hold any loss token

    @property
    def batch_size(self) -> int:
        return self.ids.shape[0]

    def _map(self, fn) -> ModelInputs:
        return replace(self, **{f.name: fn(getattr(self, f.name)) for f in fields(self)
                                if isinstance(getattr(self, f.name), torch.Tensor)})

    def to(self, device: torch.device | str, non_blocking: bool = False) -> ModelInputs:
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> ModelInputs:  # DataLoader(pin_memory=True) calls this
        return self._map(lambda t: t.pin_memory())


@dataclass(frozen=True)
class FixedShape:
    """What a task guarantees for every batch, so every batch has the same shapes and plain ints:
    a compiled step then never recompiles, and CUDA graphs can replay it (data.pad_to: max). The
    image count N still follows the batch: a task with a varying number of images per sample would
    need padding images too (captioning has exactly one per sample, N = B)."""

    length: int  # T: token columns, the longest sequence the task can encode
    loss_columns: tuple[int, int]  # columns [first, last + 1) that may hold a loss token
    max_images: int  # the most images a sample can have


def collate(examples: list[Example], pad_id: int, shape: FixedShape | None = None) -> ModelInputs:
    """Right-pad the token sequences (to the longest, or to shape.length); stack every image of every
    sample, in order. With a shape, T, loss_columns and max_images are the shape's, whatever the batch."""
    if not any(e.images for e in examples):
        raise ValueError("a batch needs at least one image (text-only batches are not supported yet)")
    longest = max(len(e.ids) for e in examples)
    if shape is not None and longest > shape.length:
        raise ValueError(f"a sample of {longest} tokens does not fit its task's fixed shape {shape}")
    width = longest if shape is None else shape.length
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    attention = torch.zeros(len(examples), width, dtype=torch.long)
    loss = torch.zeros(len(examples), width, dtype=torch.long)
    for b, e in enumerate(examples):
        ids[b, : len(e.ids)] = torch.tensor(e.ids, dtype=torch.long)
        attention[b, : len(e.ids)] = 1
        loss[b, : len(e.ids)] = torch.tensor(e.loss_mask, dtype=torch.long)
    columns = loss.any(0).nonzero().flatten().tolist()
    max_images = max(len(e.images) for e in examples)
    loss_columns = (columns[0], columns[-1] + 1) if columns else (0, 0)
    if shape is not None:
        first, last = shape.loss_columns
        if max_images > shape.max_images or (columns and not first <= loss_columns[0] <= loss_columns[1] <= last):
            raise ValueError(f"a batch does not fit its task's fixed shape {shape}: {max_images} images per "
                             f"sample at most, loss tokens in columns {loss_columns}")
        max_images, loss_columns = shape.max_images, shape.loss_columns
    return ModelInputs(
        ids=ids, attention_mask=attention, loss_mask=loss,
        pixels=torch.stack([image for e in examples for image in e.images]),
        image_sample=torch.tensor([b for b, e in enumerate(examples) for _ in e.images], dtype=torch.long),
        image_position=torch.tensor([p for e in examples for p in e.image_positions], dtype=torch.long),
        max_images=max_images, loss_columns=loss_columns,
    )


class Spliced(NamedTuple):
    embeds: torch.Tensor  # (B, L, D) tokens (padding included) and visual tokens, in sequence order
    mask: torch.Tensor  # (B, L) 1: a real token or a visual token; 0: padding, or slots of images a sample lacks
    text_positions: torch.Tensor  # (B, T) where each token of inputs.ids ended up


def splice(token_embeds: torch.Tensor, visual: torch.Tensor, inputs: ModelInputs) -> Spliced:
    """Token embeddings (B, T, D) and each image's visual tokens (N, Q, D) as one sequence of length
    L = T + Q * max_images. Each sample's content fills [0, T + Q * its images); the rest is padding."""
    (b, t, d), q = token_embeds.shape, visual.shape[1]
    device = token_embeds.device
    # Token j moves right by Q for every image of its sample placed at or before it.
    placed = torch.zeros(b, t + 1, dtype=torch.long, device=device)
    placed.index_put_((inputs.image_sample, inputs.image_position), torch.ones_like(inputs.image_sample),
                      accumulate=True)
    text_positions = torch.arange(t, device=device) + q * placed.cumsum(1)[:, :t]
    # An image starts at its position plus the visual tokens of its sample's earlier images.
    same_sample = inputs.image_sample[:, None] == inputs.image_sample[None, :]
    earlier = same_sample.tril(-1).sum(1)
    visual_positions = (inputs.image_position + q * earlier)[:, None] + torch.arange(q, device=device)  # (N, Q)

    rows = torch.arange(b, device=device)[:, None]
    length = t + q * inputs.max_images
    embeds = token_embeds.new_zeros(b, length, d)
    embeds[rows, text_positions] = token_embeds
    embeds[inputs.image_sample[:, None], visual_positions] = visual.to(token_embeds.dtype)
    mask = inputs.attention_mask.new_zeros(b, length)
    mask[rows, text_positions] = inputs.attention_mask
    mask[inputs.image_sample[:, None], visual_positions] = 1
    return Spliced(embeds, mask, text_positions)


def scored(outputs: torch.Tensor, inputs: ModelInputs, text_positions: torch.Tensor) -> torch.Tensor:
    """The outputs (B, L, ...) that predict the tokens of the loss columns: (B, C, ...).

    Only columns that hold a loss token are kept: less float32 logits memory, and for captioning
    exactly the caption block the loss has always been computed over (same numbers, bit for bit).
    """
    first, last = inputs.loss_columns
    predicting = (text_positions[:, first:last] - 1).clamp(min=0)  # clamped: column 0 never holds a loss token
    rows = torch.arange(predicting.shape[0], device=predicting.device)[:, None]
    return outputs[rows, predicting]


def token_loss(logits: torch.Tensor, inputs: ModelInputs) -> torch.Tensor:
    """Mean cross-entropy over the loss tokens of the batch; logits (B, C, V) from `scored`."""
    first, last = inputs.loss_columns
    targets = inputs.ids[:, first:last].masked_fill(inputs.loss_mask[:, first:last] == 0, -100)
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)
