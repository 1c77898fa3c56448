"""`vlcurate sample-data`: a deterministic synthetic raw pool in img2dataset's layout.

Images are scenes drawn with PIL (coloured shapes on a background, some with printed text) and the
captions describe them, so the pool doubles as a tiny captioning task for the trainer. Every rule of
the heuristic stage and every kind of broken record appears at least once (when n allows).
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import re
import struct
import tarfile
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from manifests.shard_format import add_member

URL_BASE = "http://images.vlcurate-sample.invalid"
COLOURS = {"red": (220, 40, 40), "blue": (40, 70, 220), "green": (40, 160, 60), "yellow": (235, 210, 40),
           "purple": (130, 50, 170), "orange": (240, 140, 30), "white": (245, 245, 245), "black": (20, 20, 20)}
SHAPES = ("circle", "square", "triangle")
SIZES = ((256, 256), (320, 240), (400, 300), (240, 320), (512, 384), (300, 600), (640, 480))
# Translations of one scene description, for captions the language rule must reject.
FOREIGN = (
    ("de", "ein {c} Kreis auf einem Hintergrund", {"red": "roter", "blue": "blauer", "green": "grüner"}),
    ("fr", "un cercle {c} sur un fond uni", {"red": "rouge", "blue": "bleu", "green": "vert"}),
    ("es", "un círculo {c} sobre un fondo liso", {"red": "rojo", "blue": "azul", "green": "verde"}),
    ("zh", "背景上的{c}圆圈和方块", {"red": "红色", "blue": "蓝色", "green": "绿色"}),
)
BOILERPLATE = ("IMG_2041.JPG", "click here to enlarge", "image", "DSC_0042 copy", "photo 3", "untitled")
TOO_SHORT = ("red", "a dog", "cat", "ok", "wow")
LOW_COMPLEXITY = ("so very nice and good", "this is really quite lovely", "very good and so beautiful")
POSTER_WORDS = ("SALE 50% OFF", "OPEN DAILY", "FRESH BREAD", "FREE WIFI")

# kind -> weight for the records beyond the first one of each kind
KINDS: dict[str, float] = {
    "good": 50, "good_png": 4, "good_webp": 3, "text_in_image": 8, "html_alt_text": 5, "exif_rotated": 1,
    "non_english": 7, "too_short": 3, "boilerplate": 3, "low_complexity": 2, "tiny_image": 3,
    "extreme_aspect": 3, "resized_banner": 1, "gif_format": 1, "duplicate_image": 2,
    "corrupt_jpeg": 1, "zero_byte_image": 1, "missing_caption": 1, "non_utf8_caption": 1, "huge_header": 1,
}


def remove_stale(folder: Path, name_rule: str, written: set[str]) -> int:
    """Delete files in `folder` named as this generator names its outputs but not written this time:
    an earlier, larger pool's shards would otherwise join the new pool under the same glob. Only
    names matching `name_rule` are touched; anything else in the folder is left alone."""
    stale = [p for p in folder.iterdir() if p.is_file() and re.fullmatch(name_rule, p.name) and p.name not in written]
    for path in stale:
        path.unlink()
    return len(stale)


def write_pool(out_dir: str | Path, n: int = 400, seed: int = 0, per_shard: int = 100) -> dict[str, Any]:
    out = Path(out_dir)
    (out / "shards").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    kinds = list(KINDS)[:n] + rng.choices(list(KINDS), weights=list(KINDS.values()), k=max(0, n - len(KINDS)))
    rng.shuffle(kinds)
    records, earlier_images = [], []
    for i, kind in enumerate(tqdm(kinds, desc="sample-data", unit="rec", disable=n < 2000)):
        key = f"{i // per_shard:05d}{i % per_shard:04d}"
        record = _make_record(kind, key, rng, earlier_images)
        if kind in ("good", "good_png") and record["image"]:
            earlier_images.append(record["image"])
        records.append(record)
    for shard in range(0, n, per_shard):
        _write_shard(out / "shards", shard // per_shard, records[shard : shard + per_shard])
    url_rows = [{"key": r["key"], "url": r["json"]["url"], "caption": r["text"] if isinstance(r["text"], str) else None}
                for r in records]
    pq.write_table(pa.Table.from_pylist(url_rows), out / "urls.parquet")
    shards = -(-n // per_shard)
    written = {f"{i:05d}.{ext}" for i in range(shards) for ext in ("tar", "parquet")}
    return {"records": n, "shards": shards, "kinds": dict(Counter(kinds)),
            "removed": remove_stale(out / "shards", r"\d{5}\.(tar|parquet)", written)}


# ---------------------------------------------------------------- one record
def _make_record(kind: str, key: str, rng: random.Random, earlier: list[bytes]) -> dict[str, Any]:
    size = rng.choice(SIZES)
    scene, caption = _scene(rng, size)
    fmt, text, original = "JPEG", caption, None
    exif = None
    if kind == "good_png":
        fmt = "PNG"
    elif kind == "good_webp":
        fmt = "WEBP"
    elif kind == "gif_format":
        fmt = "GIF"
    elif kind == "text_in_image":
        words = rng.choice(POSTER_WORDS)
        _print_text(scene, words, rng)
        text = f"a poster with the words {words.lower()} over {caption}"
    elif kind == "html_alt_text":
        text = f"<b>{caption.capitalize()}</b> &amp; more &lt;br&gt; <span class=\"x\">in stock</span>"
    elif kind == "exif_rotated":
        exif = Image.Exif()
        exif[0x0112] = 6  # rotate 90 degrees on display: stored 400x300 shows as 300x400
    elif kind == "non_english":
        _lang, template, words = rng.choice(FOREIGN)
        text = template.format(c=words[rng.choice(list(words))])
    elif kind == "too_short":
        text = rng.choice(TOO_SHORT)
    elif kind == "boilerplate":
        text = rng.choice(BOILERPLATE)
    elif kind == "low_complexity":
        text = rng.choice(LOW_COMPLEXITY)
    elif kind == "tiny_image":
        scene = scene.resize((rng.randint(40, 150), rng.randint(40, 150)))
    elif kind == "extreme_aspect":
        scene = scene.resize((rng.randint(700, 1200), rng.randint(200, 230)))  # min side passes
    elif kind == "resized_banner":
        # img2dataset resized a 1200x300 banner into a 256x256 square (border mode): the original
        # aspect still counts, and a square output is a resize the claim can describe.
        original = (1200, 300)
        scene = scene.resize((256, 256))

    image = _encode(scene, fmt, exif)
    ext = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif"}[fmt]
    if kind == "duplicate_image" and earlier:
        image = rng.choice(earlier)
    elif kind == "corrupt_jpeg":
        image = image[: len(image) * 6 // 10]  # truncated mid-scan: the header reads, decoding fails (image_truncated)
    elif kind == "zero_byte_image":
        image = b""
    elif kind == "huge_header":
        image, ext = png_declaring(60_000, 60_000), "png"
    if kind == "missing_caption":
        text = None
    elif kind == "non_utf8_caption":
        text = f"café crème on a {rng.choice(list(COLOURS))} table".encode("latin-1")

    width, height = scene.size
    meta = {"url": f"{URL_BASE}/{kind}/{key}.{ext}", "key": key, "status": "success", "error_message": None,
            "width": width, "height": height,
            "original_width": original[0] if original else width,
            "original_height": original[1] if original else height,
            "sha256": hashlib.sha256(image).hexdigest(), "kind": kind,
            "caption": text if isinstance(text, str) else None}
    return {"key": key, "kind": kind, "image": image, "ext": ext, "text": text, "json": meta}


def _scene(rng: random.Random, size: tuple[int, int]) -> tuple[Image.Image, str]:
    background = rng.choice(list(COLOURS))
    img = Image.new("RGB", size, COLOURS[background])
    draw = ImageDraw.Draw(img)
    parts = []
    for _ in range(rng.randint(1, 3)):
        colour = rng.choice([c for c in COLOURS if c != background])
        shape = rng.choice(SHAPES)
        big = rng.random() < 0.5
        side = int(min(size) * (rng.uniform(0.35, 0.5) if big else rng.uniform(0.12, 0.25)))
        x, y = rng.randint(0, size[0] - side), rng.randint(0, size[1] - side)
        box = (x, y, x + side, y + side)
        if shape == "circle":
            draw.ellipse(box, fill=COLOURS[colour])
        elif shape == "square":
            draw.rectangle(box, fill=COLOURS[colour])
        else:
            draw.polygon([(x + side // 2, y), (x, y + side), (x + side, y + side)], fill=COLOURS[colour])
        parts.append(f"a {'large' if big else 'small'} {colour} {shape}")
    opener = rng.choice(("", "a drawing of ", "a picture of ", "an illustration showing "))
    shapes = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return img, f"{opener}{shapes} on a {background} background"


def _print_text(img: Image.Image, words: str, rng: random.Random) -> None:
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=max(14, img.height // 8))
    x, y = rng.randint(5, max(5, img.width // 4)), rng.randint(5, max(5, img.height // 2))
    draw.rectangle(draw.textbbox((x, y), words, font=font), fill=(250, 250, 250))
    draw.text((x, y), words, fill=(10, 10, 10), font=font)


def _encode(img: Image.Image, fmt: str, exif: Image.Exif | None) -> bytes:
    buffer = io.BytesIO()
    options: dict[str, Any] = {"quality": 90} if fmt in ("JPEG", "WEBP") else {}
    if exif is not None:
        options["exif"] = exif.tobytes()
    img.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels but carries almost no data (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _write_shard(folder: Path, index: int, records: list[dict[str, Any]]) -> None:
    with tarfile.open(folder / f"{index:05d}.tar", "w", format=tarfile.PAX_FORMAT) as tar:
        for r in records:
            add_member(tar, f"{r['key']}.{r['ext']}", r["image"])
            if r["text"] is not None:
                add_member(tar, f"{r['key']}.txt", r["text"] if isinstance(r["text"], bytes) else r["text"].encode())
            add_member(tar, f"{r['key']}.json", json.dumps(r["json"], sort_keys=True).encode())
    pq.write_table(pa.Table.from_pylist([r["json"] for r in records]), folder / f"{index:05d}.parquet")
