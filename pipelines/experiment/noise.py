"""The kinds of damage a web pool has, applied to scenes of pipelines/experiment/scenes.py.

Each function takes the sample's own random.Random, so the pool stays a pure function of its seed.
pool.py decides which sample gets which damage and records the truth; nothing here knows a key.
"""

from __future__ import annotations

import io
import math
import random
from functools import lru_cache

from PIL import Image, ImageDraw, ImageEnhance, ImageFont

from pipelines.experiment.scenes import COLOURS, Scene, _draw_shape

# ---------------------------------------------------------------- other languages
# Word tables, so fastText lid.176 sees real German/French/Spanish (agreement included: a caption
# with the wrong gender still reads as the language, but a correct one is what a web page has).
# Translations name the main object(s) and the background; a second object is left out.
_DE_SHAPES = {"circle": ("Kreis", "m", "Kreise"), "square": ("Quadrat", "n", "Quadrate"),
              "triangle": ("Dreieck", "n", "Dreiecke"), "star": ("Stern", "m", "Sterne"),
              "hexagon": ("Sechseck", "n", "Sechsecke"), "cross": ("Kreuz", "n", "Kreuze")}
_DE_COLOURS = {"red": "rot", "green": "grün", "blue": "blau", "yellow": "gelb", "purple": "violett",
               "orange": "orangefarben", "white": "weiß", "black": "schwarz"}
_DE_SIZES = {"small": "klein", "large": "groß"}
_DE_TEXTURES = {"plain": "", "striped": "gestreiften ", "dotted": "gepunkteten "}

_FR_SHAPES = {"circle": ("cercle", "m"), "square": ("carré", "m"), "triangle": ("triangle", "m"),
              "star": ("étoile", "f"), "hexagon": ("hexagone", "m"), "cross": ("croix", "f")}
_FR_COLOURS = {"red": ("rouge", "rouge"), "green": ("vert", "verte"), "blue": ("bleu", "bleue"),
               "yellow": ("jaune", "jaune"), "purple": ("violet", "violette"), "orange": ("orange", "orange"),
               "white": ("blanc", "blanche"), "black": ("noir", "noire")}
_FR_SIZES = {"small": ("petit", "petite"), "large": ("grand", "grande")}
_FR_TEXTURES = {"plain": "", "striped": " rayé", "dotted": " à pois"}

_ES_SHAPES = {"circle": ("círculo", "m", "círculos"), "square": ("cuadrado", "m", "cuadrados"),
              "triangle": ("triángulo", "m", "triángulos"), "star": ("estrella", "f", "estrellas"),
              "hexagon": ("hexágono", "m", "hexágonos"), "cross": ("cruz", "f", "cruces")}
_ES_COLOURS = {"red": ("rojo", "roja"), "green": ("verde", "verde"), "blue": ("azul", "azul"),
               "yellow": ("amarillo", "amarilla"), "purple": ("morado", "morada"),
               "orange": ("naranja", "naranja"), "white": ("blanco", "blanca"), "black": ("negro", "negra")}
_ES_SIZES = {"small": ("pequeño", "pequeña"), "large": ("grande", "grande")}
_ES_TEXTURES = {"plain": "", "striped": " a rayas", "dotted": " de lunares"}
LANGUAGES = ("de", "fr", "es")


def _es_plural(word: str) -> str:
    return word if word == "naranja" else word + ("es" if word[-1] not in "aeiouáéíóú" else "s")


def translate(scene: Scene, lang: str) -> str:
    """The scene's caption in German, French or Spanish."""
    main, n = scene.main, scene.count
    if lang == "de":
        noun, gender, plural = _DE_SHAPES[main.shape]
        size, colour = _DE_SIZES[main.size], _DE_COLOURS[main.colour]
        if n == 1:
            ending = "er" if gender == "m" else "es"
            subject = f"ein {size}{ending} {colour}{ending} {noun}"
        else:
            subject = f"{('zwei', 'drei')[n - 2]} {size}e {colour}e {plural}"
        background = f"{_DE_TEXTURES[scene.texture]}{_DE_COLOURS[scene.background]}en"
        return f"{subject} auf einem {background} Hintergrund"
    if lang == "fr":
        noun, gender = _FR_SHAPES[main.shape]
        f = gender == "f"
        size, colour = _FR_SIZES[main.size][f], _FR_COLOURS[main.colour][f]
        if n == 1:
            subject = f"{'une' if f else 'un'} {size} {noun} {colour}"
        else:
            plural = noun if noun.endswith("x") else noun + "s"
            subject = f"{('deux', 'trois')[n - 2]} {size}s {plural} {colour if colour == 'orange' else colour + 's'}"
        return f"{subject} sur un fond {_FR_COLOURS[scene.background][0]}{_FR_TEXTURES[scene.texture]}"
    if lang == "es":
        noun, gender, plural = _ES_SHAPES[main.shape]
        f = gender == "f"
        size, colour = _ES_SIZES[main.size][f], _ES_COLOURS[main.colour][f]
        if n == 1:
            subject = f"{'una' if f else 'un'} {noun} {colour} {size}"
        else:
            subject = f"{('dos', 'tres')[n - 2]} {plural} {_es_plural(colour)} {_es_plural(size)}"
        return f"{subject} sobre un fondo {_ES_COLOURS[scene.background][0]}{_ES_TEXTURES[scene.texture]}"
    raise ValueError(f"no word table for {lang!r}")


# ---------------------------------------------------------------- captions that say nothing
# Alt text as CMSs and cameras leave it. Eight of ten are 1-2 words (DataComp's word count catches
# them); "click here to enlarge" and "no image available" pass the word count and English ID and
# only a boilerplate rule (filters/caption_rules.DEFAULT_BOILERPLATE_PATTERNS) rejects them.
BOILERPLATE = ("IMG_{4}.JPG", "DSC_{4}.jpg", "image {1}", "untitled", "stock photo", "thumbnail",
               "Screenshot_{8}", "photo {2}", "click here to enlarge", "no image available")


def boilerplate(rng: random.Random) -> str:
    template = rng.choice(BOILERPLATE)
    for digits in (8, 4, 2, 1):
        template = template.replace(f"{{{digits}}}", "".join(rng.choice("0123456789") for _ in range(digits)))
    return template


def short_caption(scene: Scene, rng: random.Random) -> str:
    """One or two words, some about the image ("star", "red star"), some about nothing ("image")."""
    colour, shape = scene.concept
    return rng.choice((shape, f"{colour} {shape}", f"{shape}s", colour, "shapes", "drawing", "image", "nice"))


# ---------------------------------------------------------------- images that are mostly text
@lru_cache(maxsize=None)
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)  # Pillow >= 10.1: a scalable bundled font


def _wrap(words: list[str], widths: list[float], space: float, width: float) -> list[str]:
    """Greedy line breaking, given each word's width and a space's."""
    lines: list[str] = []
    used = 0.0
    for word, w in zip(words, widths):
        if lines and used + space + w <= width:
            lines[-1], used = f"{lines[-1]} {word}", used + space + w
        else:
            lines.append(word)
            used = w
    return lines


def _fit(text: str, width: float, height: float) -> tuple[ImageFont.FreeTypeFont, list[str], float]:
    """The largest font (and its lines, line height) whose wrapped text fits width x height. Widths
    scale with the font size, so words are measured once and breaks are found by arithmetic; the
    chosen size is then checked with the real font (hinting is not exactly linear)."""
    reference = _font(100)
    words = text.split()
    unit = [reference.getlength(word) / 100 for word in words]
    space = reference.getlength(" ") / 100
    for size in range(int(height * 0.5), 9, -2):
        lines = _wrap(words, [u * size for u in unit], space * size, width)
        if len(lines) * size <= height:
            font = _font(size)
            if all(font.getlength(line) <= width for line in lines):
                return font, lines, size * 1.0
    font = _font(10)
    return font, _wrap(words, [font.getlength(w) for w in words], font.getlength(" "), width), 10.0


def text_image(caption: str, scene: Scene, size: tuple[int, int], rng: random.Random) -> tuple[Image.Image, float]:
    """A poster: the caption printed as large as it fits over the top ~85% (then stretched up to 1.5x
    along the other axis, as condensed poster type is, so short and long captions both fill it), the
    scene's object small in the strip below (what T-MARS masks out before scoring). Returns the
    image and the share of its area inside the printed lines' ink boxes (roughly what T-MARS's text
    detector boxes)."""
    w, h = size
    img = Image.new("RGB", size, COLOURS[scene.background])
    ink = (20, 20, 20) if sum(COLOURS[scene.background]) > 380 else (250, 250, 250)
    text = caption.upper() if rng.random() < 0.5 else caption
    area_w, area_h = w * 0.94, h * 0.84
    font, lines, line_h = _fit(text, area_w, area_h)
    block_w = max(font.getlength(line) for line in lines)
    block_h = (len(lines) - 1) * line_h + sum(font.getmetrics())  # the last line's descenders included
    layer = Image.new("L", (math.ceil(block_w), math.ceil(block_h)), 0)
    draw, text_area = ImageDraw.Draw(layer), 0.0
    for i, line in enumerate(lines):
        x = (block_w - font.getlength(line)) / 2
        box = draw.textbbox((x, i * line_h), line, font=font)
        text_area += (box[2] - box[0]) * (box[3] - box[1])
        draw.text((x, i * line_h), line, fill=255, font=font)
    sx, sy = area_w / layer.width, area_h / layer.height
    sx, sy = min(sx, 1.5 * sy), min(sy, 1.5 * sx)  # the fit made one of them ~1; stretch the other
    layer = layer.resize((max(1, round(layer.width * sx)), max(1, round(layer.height * sy))), Image.Resampling.BILINEAR)
    img.paste(ink, ((w - layer.width) // 2, round((area_h - layer.height) / 2 + h * 0.01)), layer)
    side = h * 0.13
    cx = rng.uniform(side, w - side)
    _draw_shape(ImageDraw.Draw(img), scene.main.shape, (cx - side / 2, h * 0.855, cx + side / 2, h * 0.855 + side),
                COLOURS[scene.main.colour])
    return img, text_area * sx * sy / (w * h)


# ---------------------------------------------------------------- near duplicates
def near_duplicate(img: Image.Image, rng: random.Random, min_side: int) -> Image.Image:
    """A re-post of the same picture: cropped by a few percent, rescaled, brightness/colour jittered
    (the caller re-encodes it at another JPEG quality). Never the same bytes, so exact dedup misses
    it; the same content, so an embedding-space dedup (SemDeDup) finds it. The short side stays
    >= min_side so the size rule does not remove it first."""
    w, h = img.size
    left, top = int(w * rng.uniform(0, 0.05)), int(h * rng.uniform(0, 0.05))
    right, bottom = w - int(w * rng.uniform(0, 0.05)), h - int(h * rng.uniform(0, 0.05))
    img = img.crop((left, top, right, bottom))
    scale = max(rng.uniform(0.9, 1.1), min_side / min(img.size))
    img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.BILINEAR)
    img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.9, 1.1))
    return ImageEnhance.Color(img).enhance(rng.uniform(0.9, 1.1))


# ---------------------------------------------------------------- broken images
BROKEN_KINDS = ("truncated", "empty", "not_an_image")
_ERROR_PAGE = (b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>\n<body><h1>Not Found</h1>"
               b"<p>The requested URL was not found on this server.</p></body></html>\n")


def broken(jpeg: bytes, rng: random.Random) -> tuple[bytes, str]:
    """What a crawler saves instead of an image: a download cut short (the header reads, the scan
    ends early), an empty body, or the server's HTML error page under a .jpg name."""
    kind = rng.choice(BROKEN_KINDS)
    if kind == "truncated":
        return jpeg[: int(len(jpeg) * rng.uniform(0.3, 0.7))], kind
    return (b"" if kind == "empty" else _ERROR_PAGE), kind


def encode(img: Image.Image, fmt: str, quality: int = 90) -> bytes:
    """Fixed encoder settings (no optimize pass, no metadata): the same pixels give the same bytes."""
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return buffer.getvalue()

