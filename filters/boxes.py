"""Boxes: normalization to the displayed image and non-maximum suppression across phrases.

A box is [x1, y1, x2, y2, score] with coordinates in [0, 1] of the image as displayed (EXIF
orientation applied, by the same decode every stage uses). NMS is greedy and class-agnostic, as GRIT
runs it over the boxes of all phrases together: the higher-scored of two boxes overlapping by more
than `iou` survives (ties: the earlier phrase, then the earlier box, so the result never depends on
arrival order).
"""

from __future__ import annotations

import math

Box = list[float]


def normalized(box_px: tuple[float, float, float, float], score: float, width: int, height: int) -> Box | None:
    """Pixel box -> [x1, y1, x2, y2, score] clipped to [0, 1]; None when less than a pixel of it is
    left inside the image (a detector may box the padding around it) or a value is NaN/infinite."""
    x1, y1, x2, y2 = box_px
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2, score)):  # min/max would make NaN a full side
        return None
    x1, x2 = max(0.0, min(x1, x2) / width), min(1.0, max(x1, x2) / width)
    y1, y2 = max(0.0, min(y1, y2) / height), min(1.0, max(y1, y2) / height)
    if (x2 - x1) * width < 1 or (y2 - y1) * height < 1:
        return None
    return [x1, y1, x2, y2, float(score)]


def iou(a: Box, b: Box) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def nms(boxes_per_phrase: list[list[Box]], iou_threshold: float) -> list[list[Box]]:
    """The boxes each phrase keeps after suppression across all phrases' boxes."""
    ranked = sorted(((box[4], -p, -i, p, box) for p, boxes in enumerate(boxes_per_phrase)
                     for i, box in enumerate(boxes)), reverse=True)
    kept: list[tuple[int, Box]] = []
    for _score, _p, _i, phrase, box in ranked:
        if all(iou(box, other) <= iou_threshold for _, other in kept):
            kept.append((phrase, box))
    out: list[list[Box]] = [[] for _ in boxes_per_phrase]
    for phrase, box in kept:
        out[phrase].append(box)
    return out
