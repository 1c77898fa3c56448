"""Inputs for the model-stage tests: generated images (distinct scenes, planted copies, rendered
text) written as webdataset shards in img2dataset's layout."""

from __future__ import annotations

import colorsys
import io
import json
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def scene(i: int, n: int = 12, size: tuple[int, int] = (160, 120)) -> Image.Image:
    """Distinct scenes: background hues spaced around the colour wheel, a few rectangles."""
    rng = np.random.default_rng(i)
    img = Image.new("RGB", size, tuple(int(255 * c) for c in colorsys.hsv_to_rgb((i % n) / n, 0.8, 0.9)))
    draw = ImageDraw.Draw(img)
    w, h = size
    for _ in range(5):
        x0, y0 = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 20))
        fg = tuple(int(255 * c) for c in colorsys.hsv_to_rgb(((i + n // 2) % n) / n, 0.9, float(rng.uniform(0.2, 1))))
        draw.rectangle([x0, y0, x0 + int(rng.integers(10, w // 3)), y0 + int(rng.integers(10, h // 2))], fill=fg)
    return img


def near_copies(img: Image.Image) -> dict[str, Image.Image]:
    """What dedup must catch: a re-encoded, a resized and a slightly cropped copy."""
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=60)
    w, h = img.size
    return {"reencoded": Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"),
            "resized": img.resize((w * 5 // 4, h * 5 // 4)),
            "cropped": img.crop((w // 40, h // 40, w - w // 40, h - h // 40))}


def with_text(background: Image.Image | str, words: str, size: tuple[int, int] = (384, 256),
              font_size: int = 44) -> Image.Image:
    """Large dark or light text over a background: a solid colour, a gradient or a photo-like scene."""
    if isinstance(background, Image.Image):
        img = background.resize(size)
    elif background == "gradient":
        ramp = np.linspace(60, 220, size[0], dtype=np.uint8)
        img = Image.fromarray(np.stack([np.tile(ramp, (size[1], 1)), np.full((size[1], size[0]), 120, np.uint8),
                                        np.tile(ramp[::-1], (size[1], 1))], axis=2))
    else:
        img = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=font_size)
    luminance = np.asarray(img).mean()
    draw.text((size[0] // 10, size[1] // 3), words, fill=(15, 15, 15) if luminance > 110 else (245, 245, 245),
              font=font)
    return img


def jpeg(img: Image.Image, quality: int = 92) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def write_records(folder: Path, records: list[tuple[str, bytes | None, str | None]], name: str = "00000") -> str:
    """records: (key, image bytes or None, caption or None) -> folder/NAME.tar; returns the tar path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.tar"
    with tarfile.open(path, "w") as tar:
        for key, image, caption in records:
            members = [(f"{key}.json", json.dumps({"key": key, "url": f"http://example.invalid/{key}.jpg"}).encode())]
            if image is not None:
                members.append((f"{key}.jpg", image))
            if caption is not None:
                members.append((f"{key}.txt", caption.encode("utf-8")))
            for member, data in members:
                info = tarfile.TarInfo(member)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return str(path)
