"""The task interface: a record read from the shards -> one Example (token ids, loss mask, images
placed in the sequence); a list of Examples -> one ModelInputs batch.

A task decides what the model reads and what it is trained to predict; the models only see
ModelInputs, so a new task (grounded captions, interleaved documents, instructions) is a new file
here, not a change to the models or the training loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image

from trainers.inputs import Example, FixedShape, ModelInputs, collate


@dataclass
class Record:
    """One sample as stored in a shard, decoded."""

    key: str  # the full member key (`a/0001`), unique within its shard
    images: list[Image.Image]  # RGB, upright (EXIF orientation applied), in document order
    text: str
    image_bytes: list[bytes]  # as stored, for evaluation pages
    # Evaluation only: every reference caption (KEY.json's "references", else [text]); empty in training.
    references: list[str] = field(default_factory=list)


class Task:
    name = ""

    def __init__(self, tokenizer, preprocess):
        self.tokenizer = tokenizer  # text -> ids, shared with the model's LLM
        self.preprocess = preprocess  # PIL image -> (3, H, W) tensor, the vision encoder's transform
        # None: batches padded to their longest sample (data.pad_to: longest); a task that knows its
        # longest encoding sets it for data.pad_to: max.
        self.shape: FixedShape | None = None

    def encode(self, record: Record) -> Example:
        raise NotImplementedError

    def collate(self, examples: list[Example]) -> ModelInputs:
        return collate(examples, self.tokenizer.pad_token_id, self.shape)
