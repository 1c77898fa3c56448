"""A tiny synthetic captioning task: coloured shapes on coloured backgrounds, captioned
"a red circle on a blue background", written as curated-style webdataset shards."""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw

from tests.model_inputs import jpeg, write_records
from tests.tiny_llm import COLOURS, SHAPES

RGB = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (30, 60, 220), "yellow": (240, 220, 40),
       "purple": (140, 40, 170), "orange": (250, 140, 20), "white": (245, 245, 245), "black": (15, 15, 15)}


def shape_image(shape: str, colour: str, background: str, size: int = 64) -> Image.Image:
    img = Image.new("RGB", (size, size), RGB[background])
    draw = ImageDraw.Draw(img)
    box = [size // 4, size // 4, 3 * size // 4, 3 * size // 4]
    if shape == "circle":
        draw.ellipse(box, fill=RGB[colour])
    elif shape == "square":
        draw.rectangle(box, fill=RGB[colour])
    elif shape == "triangle":
        draw.polygon([(size // 2, size // 4), (size // 4, 3 * size // 4), (3 * size // 4, 3 * size // 4)], fill=RGB[colour])
    else:
        draw.regular_polygon((size // 2, size // 2, size // 4), 5, fill=RGB[colour])
    return img


def write_shapes(folder: Path, n: int, seed: int = 0, per_shard: int = 64) -> str:
    """n samples over ceil(n / per_shard) shards; returns a brace pattern naming them."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        shape, colour, background = rng.choice(SHAPES), *rng.sample(COLOURS, 2)
        records.append((f"{i:06d}", jpeg(shape_image(shape, colour, background)),
                        f"a {colour} {shape} on a {background} background"))
    shards = 0
    for start in range(0, n, per_shard):
        write_records(folder, records[start:start + per_shard], name=f"{shards:05d}")
        shards += 1
    return f"{folder}/{{00000..{shards - 1:05d}}}.tar"
