"""OBELICS' rules on an image of a document (web_document_filtering.py:30-50 and 649-687,
thresholds config_filter_web_documents.yaml l.1-12):

- the fetched file: format JPEG/PNG/WEBP, each side within [150, 20000], aspect ratio w/h within
  [1/2, 2]; plus vlcurate's pixel guard and a full decode, so a node kept is an image every reader
  can open (the same decode as every stage);
- the size the page shows it at: the <img> width/height attributes, each within [150, 20000]
  (icons, spacers and thumbnails a page shows small are dropped even when the file is large), as
  html_extract.declared_size reads them; a percentage is resolved against the fetched image's size
  (round(side * p / 100)). Sizes in pixels are judged before fetching, so a page's tracking pixels
  cost no request.
"""

from __future__ import annotations

from typing import Any, Mapping

from filters.image_checks import ImageHeader, ImageProblem, decode_problem, read_header, size_problem, \
    truncation_problem


def rendered_size_problem(meta: Mapping[str, Any], width: int | None = None, height: int | None = None, *,
                          min_side: int | None, max_side: int | None) -> ImageProblem | None:
    """The declared (rendered) size against [min_side, max_side]. Before fetching, `width`/`height`
    are None and only sizes in pixels are judged; after, percentages of the fetched size too."""
    for side, fetched, shape in (("width", width, "wide"), ("height", height, "high")):
        shown = meta.get(side)
        if not isinstance(shown, int) and fetched is not None and isinstance(meta.get(f"{side}_percent"), int):
            shown = round(fetched * meta[f"{side}_percent"] / 100)
        if not isinstance(shown, int) or isinstance(shown, bool):
            continue
        if min_side is not None and shown < min_side:
            return ImageProblem("image_rendered_too_small", f"shown {shown} px {shape} < {min_side}")
        if max_side is not None and shown > max_side:
            return ImageProblem("image_rendered_too_large", f"shown {shown} px {shape} > {max_side}")
    return None


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
