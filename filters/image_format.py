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
