"""Decode an image for a model: RGB pixels as displayed (EXIF orientation applied), or why not.

Model stages may run without the heuristic stage before them, so they guard against
decompression bombs themselves: the header's declared size is checked before any pixel is decoded.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageOps

from filters.image_checks import (ImageHeader, ImageProblem, decode_error, read_header, size_problem,
                                  truncation_problem)
from filters.sample import Rejection, Sample

DEFAULT_MAX_PIXELS = 89_478_485  # PIL's own bomb limit


def decode_rgb(image: bytes | None, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image | ImageProblem:
    header = read_header(image)
    if isinstance(header, ImageProblem):
        return header
    problem = size_problem(header.width, header.height, min_side=None, max_aspect=None, max_pixels=max_pixels)
    if problem is None:
        problem = truncation_problem(image, header)
    if problem is not None:
        return problem
    return _decode(image, header)


def decode_for_model(sample: Sample, stage: str, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                     need_caption: bool = True) -> Image.Image | Rejection:
    """The sample's RGB image for a model stage, or the Rejection saying why there is none."""
    if need_caption and sample.caption is None:
        return Rejection.of(sample, stage, "caption_missing", "no caption to score against")
    image = decode_rgb(sample.image, max_pixels)
    if isinstance(image, ImageProblem):
        return Rejection.of(sample, stage, image.reason, image.detail)
    return image


def _decode(image: bytes, header: ImageHeader) -> Image.Image | ImageProblem:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(image)) as img:
                img.load()
                if header.exif_transposed or img.getexif().get(0x0112, 1) != 1:
                    img = ImageOps.exif_transpose(img)
                return _as_rgb(img)
    except Exception as err:  # PIL raises many types for bad data; every one is a reason here
        return decode_error(err)


def _as_rgb(img: Image.Image) -> Image.Image:
    """RGB as the image is seen. Pillow's convert("RGB") clips 16-bit and 32-bit integer greys to 255
    (a mid-grey 16-bit PNG became white) and maps float greys in 0..1 to black: scale them to 8 bits.
    Integer arithmetic on the 16-bit plane: float64 copies of an 89-megapixel image cost gigabytes."""
    if img.mode.startswith("I;16"):  # 16 bits per sample, whatever its values
        import numpy as np

        values = np.asarray(img).astype(np.uint32)
        return Image.fromarray(((values * 255 + 32767) // 65535).astype(np.uint8), "L").convert("RGB")
    if img.mode in ("I", "F"):  # 32-bit: 16-bit PNGs in older Pillow, TIFFs; the range is the image's guess
        import numpy as np

        values = np.array(img, dtype=np.float32)  # a writable copy: scaled in place
        top = float(np.nanmax(values)) if values.size else 0.0
        scale = 255.0 if img.mode == "F" and top <= 1.0 else 1.0 if top <= 255 else 255.0 / 65535.0
        values *= scale
        np.nan_to_num(values, copy=False)
        return Image.fromarray(values.clip(0, 255).round().astype(np.uint8), "L").convert("RGB")
    return img.convert("RGB")
