"""A deterministic classical detector for tests: colour segmentation behind the detector interface.

Not a product detector (the grounding stage's real ones are OWL-ViT, OWLv2 and Grounding DINO): it
finds, for a query naming a colour, the bounding box of the pixels of that colour. With synthetic
images of known shapes it proves that the stage's path (decode with EXIF, queries, normalization,
NMS, referring expressions, renderings, shards) puts the right boxes on the right phrases.
"""

from __future__ import annotations

import numpy as np

COLOURS = {"red": (220, 40, 40), "blue": (40, 70, 220), "green": (40, 160, 60), "yellow": (235, 210, 40)}


class ColourDetector:
    family = "colour-test"

    def __init__(self, path: str, device: str = "cpu"):
        self.path, self.device = path, device

    def detect(self, images: list, queries: list[list[str]], threshold: float):
        out = []
        for image, texts in zip(images, queries):
            pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
            found = []
            for text in texts:
                colour = next((COLOURS[w] for w in text.lower().split() if w in COLOURS), None)
                if colour is None:
                    found.append([])
                    continue
                mask = (np.abs(pixels - np.array(colour)).sum(axis=2) < 60)
                ys, xs = np.nonzero(mask)
                if len(xs) < 20:
                    found.append([])
                    continue
                found.append([(float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1), 0.95)])
            out.append(found)
        return out
