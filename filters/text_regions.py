"""Text regions: find them with PP-OCRv4's detector (shipped in rapidocr_onnxruntime), fill them in.

`TextRegionDetector` runs only the detection network, at a longest side we choose: rapidocr's own
`text_det` ignores its side limit in "max" mode (it picks 960/1500/2000), which is several times
the cost we want per image. `TextRegionMasker` fills each region with the mean colour of a ring of
pixels just outside it (T-MARS), so the image keeps its layout and colours but loses its text.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DETECTOR_PACKAGE = "rapidocr_onnxruntime"


class TextRegionDetector:
    def __init__(self, side: int = 256, box_threshold: float = 0.5, threads: int | None = None):
        try:
            from rapidocr_onnxruntime.ch_ppocr_det import TextDetector
            from rapidocr_onnxruntime.ch_ppocr_det.utils import DetPreProcess
            from rapidocr_onnxruntime.main import DEFAULT_CFG_PATH
            from rapidocr_onnxruntime.utils import read_yaml, update_model_path
        except ImportError as err:
            raise FileNotFoundError(
                "the T-MARS text detector needs rapidocr_onnxruntime==1.4.4 (it ships the PP-OCRv4 "
                "detector): pip install rapidocr_onnxruntime==1.4.4") from err
        config = update_model_path(read_yaml(DEFAULT_CFG_PATH))["Det"]
        config["box_thresh"] = box_threshold
        if threads is not None:
            config["intra_op_num_threads"] = threads
            config["inter_op_num_threads"] = 1
        self.model_path = config["model_path"]
        self._detector = TextDetector(config)
        # The network needs sides that are multiples of 32; "max" scales the longest side to `side`.
        self._preprocess = DetPreProcess(side, "max", config["mean"], config["std"])

    def detect(self, rgb: np.ndarray) -> np.ndarray:
        """(N, 4, 2) float32 quadrilaterals in the image's pixel coordinates."""
        height, width = rgb.shape[:2]
        tensor = self._preprocess(np.ascontiguousarray(rgb[..., ::-1]))  # the model was trained on BGR
        if tensor is None:
            return np.zeros((0, 4, 2), np.float32)
        probabilities = self._detector.infer(tensor)[0]
        boxes, _scores = self._detector.postprocess_op(probabilities, (height, width))
        if len(boxes) == 0:
            return np.zeros((0, 4, 2), np.float32)
        boxes = self._detector.filter_tag_det_res(boxes, (height, width))
        return np.asarray(boxes, np.float32).reshape(-1, 4, 2)


@dataclass
class MaskedImage:
    pixels: np.ndarray  # the input array itself when there was nothing to mask
    text_fraction: float  # detected text area / image area (regions as detected, before dilation)
    regions: int


class TextRegionMasker:
    def __init__(self, dilate_px: int = 2, ring_px: int = 4):
        self.dilate_px = dilate_px
        self.ring_px = ring_px

    def mask(self, rgb: np.ndarray, polygons: np.ndarray) -> MaskedImage:
        import cv2

        if len(polygons) == 0:
            return MaskedImage(rgb, 0.0, 0)
        height, width = rgb.shape[:2]
        points = [np.round(p).astype(np.int32) for p in polygons]
        detected = np.zeros((height, width), np.uint8)
        cv2.fillPoly(detected, points, 1)
        text_fraction = float(detected.mean())

        grown = [self._region(p, height, width, self.dilate_px) for p in points]
        all_text = np.zeros((height, width), bool)
        for (y0, y1, x0, x1), region in grown:
            all_text[y0:y1, x0:x1] |= region
        out = rgb.copy()
        for (y0, y1, x0, x1), region in grown:
            # The ring: pixels within ring_px of the region that are not text themselves.
            r = self.ring_px
            ry0, ry1, rx0, rx1 = max(0, y0 - r), min(height, y1 + r), max(0, x0 - r), min(width, x1 + r)
            local = np.zeros((ry1 - ry0, rx1 - rx0), np.uint8)
            local[y0 - ry0:y1 - ry0, x0 - rx0:x1 - rx0] = region
            ring = cv2.dilate(local, np.ones((2 * r + 1, 2 * r + 1), np.uint8)).astype(bool)
            ring &= ~all_text[ry0:ry1, rx0:rx1]
            source = rgb[ry0:ry1, rx0:rx1][ring]
            if len(source) == 0:  # text all around (or the whole image): use the region's own mean
                source = rgb[y0:y1, x0:x1][region]
            out[y0:y1, x0:x1][region] = source.reshape(-1, rgb.shape[2]).mean(axis=0).round().astype(rgb.dtype)
        return MaskedImage(out, text_fraction, len(points))

    @staticmethod
    def _region(polygon: np.ndarray, height: int, width: int, grow: int):
        """The polygon's filled mask within its (grown, clipped) bounding box."""
        import cv2

        x0 = max(0, int(polygon[:, 0].min()) - grow)
        x1 = min(width, int(polygon[:, 0].max()) + grow + 1)
        y0 = max(0, int(polygon[:, 1].min()) - grow)
        y1 = min(height, int(polygon[:, 1].max()) + grow + 1)
        local = np.zeros((max(0, y1 - y0), max(0, x1 - x0)), np.uint8)
        cv2.fillPoly(local, [polygon - np.array([x0, y0], np.int32)], 1)
        if grow:
            local = cv2.dilate(local, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8))
        return (y0, y1, x0, x1), local.astype(bool)
