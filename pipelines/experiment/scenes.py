"""The mini-DataComp world: procedural scenes of shapes, and the captions that describe them.

A scene is one kind of object (a shape in a colour and a size) drawn 1-3 times, optionally beside a
second object (a spatial relation), on a plain, striped or dotted background of another colour.
Its *concept* is the (colour, shape) pair of the main object: the unit the pool's heavy tail and
MetaCLIP's balancing are about. Everything is drawn with PIL from a seeded random.Random, so the
same seed gives the same pixels. Captions come from several templates (held-out images get one
reference per template), and `read_concepts` finds colour, shape and count in any caption,
generated ones included: the experiment's concept accuracy.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass

from PIL import Image, ImageDraw

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 70), "blue": (40, 80, 220), "yellow": (240, 210, 40),
           "purple": (140, 50, 170), "orange": (245, 140, 30), "white": (245, 245, 245), "black": (20, 20, 20)}
SHAPES = ("circle", "square", "triangle", "star", "hexagon", "cross")
SIZES = ("small", "large")
TEXTURES = ("plain", "striped", "dotted")
RELATIONS = ("to the left of", "above")
COUNT_WORDS = {1: "one", 2: "two", 3: "three"}
CONCEPTS = tuple((colour, shape) for colour in COLOURS for shape in SHAPES)  # 48


@dataclass(frozen=True)
class Thing:
    shape: str
    colour: str
    size: str


@dataclass(frozen=True)
class Scene:
    main: Thing
    count: int  # how many of the main object (1-3)
    background: str
    texture: str
    other: Thing | None = None  # a second object, placed by `relation` relative to the main one
    relation: str | None = None

    @property
    def concept(self) -> tuple[str, str]:
        return self.main.colour, self.main.shape


def random_scene(rng: random.Random, concept: tuple[str, str] | None = None) -> Scene:
    colour, shape = concept or rng.choice(CONCEPTS)
    background = rng.choice([c for c in COLOURS if c != colour])
    main = Thing(shape, colour, rng.choice(SIZES))
    other = relation = None
    if rng.random() < 0.3:
        other_colour = rng.choice([c for c in COLOURS if c not in (colour, background)])
        other = Thing(rng.choice([s for s in SHAPES if s != shape]), other_colour, rng.choice(SIZES))
        relation = rng.choice(RELATIONS)
    count = 1 if other else rng.choice((1, 1, 2, 3))
    return Scene(main, count, background, rng.choice(TEXTURES), other, relation)


# ---------------------------------------------------------------- captions
def _noun(thing: Thing, count: int, article: bool = True) -> str:
    words = f"{thing.size} {thing.colour} {thing.shape}"
    if count > 1:
        return f"{COUNT_WORDS[count]} {words}{'es' if thing.shape == 'cross' else 's'}"
    return f"a {words}" if article else words  # sizes come first: never "an"


def _background(scene: Scene) -> str:
    """'a striped blue background', 'an orange background'."""
    words = f"{'' if scene.texture == 'plain' else scene.texture + ' '}{scene.background} background"
    return f"{'an' if words[0] in 'aeiou' else 'a'} {words}"


def captions(scene: Scene) -> list[str]:
    """Every reference caption of a scene, one per template (the first is the pool's default)."""
    subject = _noun(scene.main, scene.count)
    if scene.other is not None:
        subject = f"{subject} {scene.relation} {_noun(scene.other, 1)}"
    return [
        f"{subject} on {_background(scene)}",
        f"a picture of {subject} on {scene.background}",
        f"{subject[0].upper()}{subject[1:]}, drawn on {_background(scene)}.",
    ]


_COUNT_OF = {word: n for n, word in COUNT_WORDS.items()} | {"a": 1, "an": 1}
_PHRASE = re.compile(r"\b(a|an|one|two|three)\s+(?:(?:small|large)\s+)?(" + "|".join(COLOURS) + r")\s+("
                     + "|".join(SHAPES) + r")(?:e?s)?\b", re.IGNORECASE)


def read_concepts(caption: str) -> dict[str, object] | None:
    """The first object phrase of a caption (count, colour, shape), or None if it names none."""
    found = _PHRASE.search(caption or "")
    if found is None:
        return None
    count, colour, shape = found.group(1).lower(), found.group(2).lower(), found.group(3).lower()
    return {"count": _COUNT_OF[count], "colour": colour, "shape": shape}


# ---------------------------------------------------------------- pixels
def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple[float, float, float, float], fill) -> None:
    x0, y0, x1, y1 = box
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, y0), (x0, y1), (x1, y1)], fill=fill)
    elif shape == "star":  # five points, inner radius 0.45 r
        points = [(cx + (r if i % 2 == 0 else 0.45 * r) * math.sin(i * math.pi / 5),
                   cy - (r if i % 2 == 0 else 0.45 * r) * math.cos(i * math.pi / 5)) for i in range(10)]
        draw.polygon(points, fill=fill)
    elif shape == "hexagon":
        draw.regular_polygon((cx, cy, r), 6, fill=fill)
    else:  # cross
        t = r / 3
        draw.rectangle((cx - t, y0, cx + t, y1), fill=fill)
        draw.rectangle((x0, cy - t, x1, cy + t), fill=fill)


def _texture(img: Image.Image, scene: Scene, rng: random.Random) -> None:
    if scene.texture == "plain":
        return
    draw = ImageDraw.Draw(img)
    w, h = img.size
    shade = tuple(max(0, c - 45) if sum(COLOURS[scene.background]) > 300 else min(255, c + 45)
                  for c in COLOURS[scene.background])
    step = max(8, min(w, h) // 10)
    if scene.texture == "striped":
        for x in range(-h, w, step):
            draw.line([(x, 0), (x + h, h)], fill=shade, width=max(2, step // 3))
    else:
        offset = rng.randrange(step)
        for y in range(offset, h, step):
            for x in range(offset, w, step):
                draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=shade)


def render(scene: Scene, rng: random.Random, size: tuple[int, int] = (224, 224)) -> Image.Image:
    """The scene drawn at `size` (w, h): main objects in a row (left part when there is another
    object placed to their right, top part when placed below), jittered by `rng`."""
    w, h = size
    img = Image.new("RGB", size, COLOURS[scene.background])
    _texture(img, scene, rng)
    draw = ImageDraw.Draw(img)
    region = (0.0, 0.0, float(w), float(h))
    other_region = None
    if scene.other is not None and scene.relation == "to the left of":
        region, other_region = (0.0, 0.0, w * 0.55, float(h)), (w * 0.55, 0.0, float(w), float(h))
    elif scene.other is not None:
        region, other_region = (0.0, 0.0, float(w), h * 0.55), (0.0, h * 0.55, float(w), float(h))

    def place(thing: Thing, count: int, area: tuple[float, float, float, float]) -> None:
        ax0, ay0, ax1, ay1 = area
        cell = (ax1 - ax0) / count
        side = min(cell, ay1 - ay0) * (0.8 if thing.size == "large" else 0.42)
        for i in range(count):
            cx = ax0 + cell * (i + 0.5) + rng.uniform(-0.08, 0.08) * cell
            cy = (ay0 + ay1) / 2 + rng.uniform(-0.08, 0.08) * (ay1 - ay0)
            _draw_shape(draw, thing.shape, (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2),
                        COLOURS[thing.colour])

    place(scene.main, scene.count, region)
    if scene.other is not None and other_region is not None:
        place(scene.other, 1, other_region)
    return img
