"""OBELICS' rules on a fetched image of a document (web_document_filtering.py:649-687, thresholds
config_filter_web_documents.yaml l.1-12): format JPEG/PNG/WEBP, each side within [150, 20000],
aspect ratio w/h within [1/2, 2]; plus vlcurate's pixel guard and a full decode, so a node kept
is an image every reader can open (the same decode as every stage)."""

from __future__ import annotations

from typing import Any

from filters.image_checks import ImageHeader, ImageProblem, decode_problem, read_header, size_problem, \
    truncation_problem


def image_problem(data: bytes, config: Any) -> tuple[ImageProblem | None, ImageHeader | None]:
    header = read_header(data)
    if not isinstance(header, ImageHeader):
        return header, None
    if header.format not in config.allowed_formats:
        return ImageProblem("image_format_not_allowed", header.format), header
    problem = size_problem(header.width, header.height, min_side=config.min_side, max_aspect=config.max_aspect,
                           max_pixels=config.max_pixels)
    if problem is None and config.max_side is not None and max(header.width, header.height) > config.max_side:
        problem = ImageProblem("image_too_large", f"{header.width}x{header.height}, a side > {config.max_side}")
    if problem is None:
        problem = truncation_problem(data, header) or decode_problem(data, header.format)
    return problem, header

