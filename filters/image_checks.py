"""Image checks, cheapest first: the header (format, declared size) before any pixel is decoded.

A decompression bomb declares a huge size in a few bytes; reading the header first lets us reject
it without allocating its pixels. Full decoding comes last and only for images that passed.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass
from typing import Any

from PIL import Image, UnidentifiedImageError

# EXIF orientations 5-8 rotate by 90 or 270 degrees: width and height swap on display.
_EXIF_ORIENTATION_TAG = 0x0112
_TRANSPOSED_ORIENTATIONS = {5, 6, 7, 8}
MAX_CLAIMED_SIDE = 1 << 20  # no real image is a million pixels on a side


# What decoding an image for a model can say (decode_rgb): model stages list these among their reasons.
DECODE_REASONS = ("image_missing", "image_empty", "image_undecodable", "image_truncated", "image_too_many_pixels")


@dataclass(frozen=True, slots=True)
class ImageHeader:
    format: str  # PIL's name: JPEG, PNG, WEBP, ...
    width: int  # as displayed, i.e. after EXIF orientation
    height: int
    exif_transposed: bool


@dataclass(frozen=True, slots=True)
class ImageProblem:
    reason: str
    detail: str


def read_header(image: bytes | None) -> ImageHeader | ImageProblem:
    """Format and displayed size from the header alone, or why that could not be read."""
    if image is None:
        return ImageProblem("image_missing", "the record has no image file")
    if len(image) == 0:
        return ImageProblem("image_empty", "the image file has zero bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(image)) as img:
                width, height = img.size
                fmt = img.format or "UNKNOWN"
                orientation = _exif_orientation(img)
    except Image.DecompressionBombError as err:
        # Pillow's own guard refuses it at open, before any size rule of ours: a recipe's max_pixels
        # can lower the limit but not raise it past Pillow's (2 x Image.MAX_IMAGE_PIXELS).
        pixels = re.search(r"\((\d+) pixels\)", str(err))
        said = f"{int(pixels.group(1)):,} pixels" if pixels else "its size"
        return ImageProblem("image_too_many_pixels", f"{said} > {2 * Image.MAX_IMAGE_PIXELS:,} pixels, "
                            "Pillow's own limit (max_pixels cannot raise it)")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        return ImageProblem("image_undecodable", f"{type(err).__name__}: {err}")
    transposed = orientation in _TRANSPOSED_ORIENTATIONS
    if transposed:
        width, height = height, width
    return ImageHeader(fmt, width, height, transposed)


def _exif_orientation(img: Image.Image) -> int | None:
    try:
        return img.getexif().get(_EXIF_ORIENTATION_TAG)
    except Exception:  # a broken EXIF block is not a broken image; the size check still runs
        return None


def size_problem(
    width: int,
    height: int,
    *,
    min_side: int | None,
    max_aspect: float | None,
    max_pixels: int | None,
) -> ImageProblem | None:
    if max_pixels is not None and width * height > max_pixels:
        return ImageProblem("image_too_many_pixels", f"{width}x{height} > {max_pixels} pixels")
    if width <= 0 or height <= 0:
        return ImageProblem("image_undecodable", f"declared size {width}x{height}")
    if min_side is not None and min(width, height) < min_side:
        return ImageProblem("image_too_small", f"{width}x{height}, min side < {min_side}")
    if max_aspect is not None and max(width, height) / min(width, height) > max_aspect:
        ratio = max(width, height) / min(width, height)
        shown = f"{ratio:.4g}"  # 601x200 reads "3.005 > 3" (it read "3.00 > 3.0"); all digits if needed
        if float(shown) <= max_aspect:
            shown = repr(ratio)
        return ImageProblem("image_aspect_too_extreme", f"{width}x{height}, aspect {shown} > {max_aspect:g}")
    return None


def original_size(meta: dict[str, Any], header: ImageHeader, min_download_side: int | None = 128
                  ) -> tuple[int, int, str | None]:
    """The size the size rules judge, and why a claimed original size was ignored (None if not).

    DataComp's size rule reads img2dataset's original_width/original_height: a 1000x150 banner
    resized to 256x256 must still count as a banner. But the claim is only metadata: it is trusted
    when the image we hold could be a download-time resize of it (the same aspect within rounding,
    or a square border/crop output) and is not tiny (its longest side at least min_download_side,
    or the original's own, if smaller); otherwise the decoded size decides. A 16x16 image claiming
    an 8000x8000 original is judged as 16x16.
    """
    ow, oh = meta.get("original_width"), meta.get("original_height")
    if ow is None and oh is None:
        return header.width, header.height, None
    # Only plausible sizes are trusted: a 5,000-digit "width" once overflowed the aspect division.
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= MAX_CLAIMED_SIDE for v in (ow, oh)):
        return header.width, header.height, "not two plausible integers"
    w, h = header.width, header.height
    # A uniform resize rounds each side by < 1 pixel; either orientation (the claim may predate EXIF
    # rotation; the size rules, min side and aspect, do not depend on it).
    same_aspect = min(abs(ow * h - oh * w), abs(ow * w - oh * h)) <= ow + oh
    if not (same_aspect or w == h):
        return w, h, f"{w}x{h} cannot be a resize of {ow}x{oh}"
    if min_download_side and max(w, h) < min(max(ow, oh), min_download_side):
        return w, h, f"{w}x{h} is too small to stand for {ow}x{oh}"
    return ow, oh, None


def truncation_problem(image: bytes, header: ImageHeader) -> ImageProblem | None:
    """A JPEG too short to hold the size its header declares.

    libjpeg treats data that ends early as a warning and fills the rest with grey, so a file whose
    header says 8000x8000 but whose scan holds 256x256 decodes "fine". Every 8x8 luma block costs
    at least one bit of entropy-coded data (a DC code; progressive EOB runs cannot skip the DC
    scan), so a file of fewer bytes than blocks / 8 cannot be whole, whatever its content.
    """
    if header.format != "JPEG":
        return None
    blocks = -(-header.width // 8) * -(-header.height // 8)
    if len(image) * 8 < blocks:
        return ImageProblem("image_truncated", f"{len(image):,} bytes cannot hold the declared "
                                               f"{header.width}x{header.height} ({blocks:,} blocks)")
    return None


def decode_problem(image: bytes, fmt: str) -> ImageProblem | None:
    """Decode every byte of the image; a truncated or corrupt stream becomes a reason.

    JPEGs decode in draft mode (DCT scaling to 1/8): the entropy-coded data is still read
    in full, so corruption is caught, at a fraction of the cost of a full-size decode.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(image)) as img:
                if fmt == "JPEG":
                    img.draft("RGB", (max(1, img.width // 8), max(1, img.height // 8)))
                img.load()
    except Exception as err:  # PIL raises many types for bad data; every one is a reason here
        return decode_error(err)
    return None


def decode_error(err: Exception) -> ImageProblem:
    """The reason for an exception PIL raised while decoding: cut data, or anything else."""
    reason = "image_truncated" if "truncated" in str(err) else "image_undecodable"
    return ImageProblem(reason, f"{type(err).__name__}: {err}")
