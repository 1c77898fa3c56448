"""A tiny open_clip model built at test time and saved like a real one (config JSON + checkpoint),
so tests load it through the same paths users use: config_dir + a local `pretrained` file."""

from __future__ import annotations

import json
from pathlib import Path

TINY_NAME = "vlcurate-tiny-clip"
TINY_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def write_clip_checkpoint(directory: Path, name: str = TINY_NAME, config: dict | None = None,
                          seed: int = 0, content_sensitive: bool = False) -> dict:
    """Writes DIR/NAME.json and DIR/NAME.pt (random weights, seeded); returns the recipe's `model:` block.

    content_sensitive: zero the ViT's positional and class embeddings. A random ViT's output is
    dominated by them (any two images score ~0.97 cosine); without them distinct images spread out
    (mean ~0.15) while resized/re-encoded/cropped copies stay above ~0.97, as dedup tests need.
    """
    import open_clip
    import torch

    directory.mkdir(parents=True, exist_ok=True)
    if config is not None or name == TINY_NAME:
        (directory / f"{name}.json").write_text(json.dumps(config or TINY_CONFIG))
        open_clip.add_model_config(directory)
    torch.manual_seed(seed)
    model = open_clip.create_model(name)
    if content_sensitive:
        with torch.no_grad():
            model.visual.positional_embedding.zero_()
            model.visual.class_embedding.zero_()
    checkpoint = directory / f"{name}.pt"
    torch.save({"state_dict": model.state_dict()}, checkpoint)
    block = {"name": name, "pretrained": str(checkpoint)}
    if config is not None or name == TINY_NAME:
        block["config_dir"] = str(directory)
    return block
