"""T-MARS masking on a real product photo (../shared/data/images/tmars_sample_text_detect.jpg):
writes docs/images/tmars_before.jpg (detected regions outlined) and tmars_after.jpg (masked),
and prints the regions, the text fraction and what the detector still finds after masking.

    .venv/bin/python tests/bench/tmars_example.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from filters.text_regions import TextRegionDetector, TextRegionMasker  # noqa: E402
from tests.bench.common import SHARED  # noqa: E402

PHOTO = SHARED / "images" / "tmars_sample_text_detect.jpg"


def main() -> None:
    if not PHOTO.exists():
        print(f"SKIP: {PHOTO} not found")
        return
    pixels = np.asarray(Image.open(PHOTO).convert("RGB"))
    masker = TextRegionMasker()
    for side in (256, 512, 736):
        detector = TextRegionDetector(side=side)
        boxes = detector.detect(pixels)
        masked = masker.mask(pixels, boxes)
        after = masker.mask(masked.pixels, detector.detect(masked.pixels))
        print(f"detector side {side}: {masked.regions} regions, text fraction {masked.text_fraction:.4f}; "
              f"after masking the detector finds {after.regions} regions ({after.text_fraction:.4f})")
        if side == 256:  # the stage's default
            outlined = Image.fromarray(pixels.copy())
            draw = ImageDraw.Draw(outlined)
            for box in boxes:
                draw.polygon([tuple(p) for p in box.round().astype(int).tolist()], outline=(0, 200, 0), width=2)
            outlined.save(ROOT / "docs/images/tmars_before.jpg", quality=90)
            Image.fromarray(masked.pixels).save(ROOT / "docs/images/tmars_after.jpg", quality=90)


if __name__ == "__main__":
    main()
