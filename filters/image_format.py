"""The file extension an image's bytes call for, from their magic numbers."""

from __future__ import annotations

_MAGIC = (
    (b"\xff\xd8\xff", "jpg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
)


def extension_for(image: bytes) -> str:
    if image[:4] == b"RIFF" and image[8:12] == b"WEBP":
        return "webp"
    for magic, ext in _MAGIC:
        if image.startswith(magic):
            return ext
    return "bin"


_FORMAT_NAMES = {"jpg": "JPEG", "png": "PNG", "gif": "GIF", "bmp": "BMP", "webp": "WEBP"}


def format_name(image: bytes) -> str | None:
    """PIL's name for the format ("JPEG", "PNG", ...), as the heuristics stage records it; None if unknown."""
    return _FORMAT_NAMES.get(extension_for(image))
