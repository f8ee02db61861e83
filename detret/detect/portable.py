"""The exported detector run by ONNX Runtime: photos -> detections, with numpy and Pillow only.

No Detectron2 and no torch are imported here: a process serving an exported bundle needs neither for
detection. The graph (:mod:`.onnx_export`) is Detectron2's Mask R-CNN from the resized photo to the raw
detections; this module does what Detectron2 does around it, step for step:

1. the resize of ``DefaultPredictor`` (``ResizeShortestEdge``: shortest edge to ``min_size``, longest at most
   ``max_size``, sizes rounded as ``ResizeShortestEdge.get_output_shape`` rounds them, Pillow's bilinear
   resize as ``ResizeTransform`` does for uint8 photos), channels in the detector's input format;
2. ``detector_postprocess``: boxes scaled back to the photo, clipped to it, empty ones dropped;
3. masks (when exported): ``paste_masks_in_image``: each [M, M] mask sampled bilinearly (``grid_sample``
   with zero padding, ``align_corners=False``) at the centres of the photo's pixels inside its box, then
   ``>= mask_threshold``. The grid is a product of x and y positions, so the sampling is two small matrix
   products per mask (:func:`paste_mask`).

``tests/detect/test_engine.py`` checks all three against Detectron2's own functions.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from .crops import Detection
from .masks import encode_mask


def resized_shape(height: int, width: int, min_size: int, max_size: int) -> Tuple[int, int]:
    """(height, width) of the photo as the detector sees it (Detectron2's ``get_output_shape``)."""
    scale = min_size * 1.0 / min(height, width)
    newh, neww = (min_size * 1.0, scale * width) if height < width else (scale * height, min_size * 1.0)
    if max(newh, neww) > max_size:
        scale = max_size * 1.0 / max(newh, neww)
        newh, neww = newh * scale, neww * scale
    return int(newh + 0.5), int(neww + 0.5)


def graph_input(rgb: np.ndarray, min_size: int, max_size: int, input_format: str) -> np.ndarray:
    """[H, W, 3] uint8 RGB -> the graph's ``image``: uint8 [3, H', W'] resized, channels in ``input_format``."""
    img = rgb[:, :, ::-1] if input_format == "BGR" else rgb
    h, w = resized_shape(img.shape[0], img.shape[1], min_size, max_size)
    resized = np.asarray(Image.fromarray(np.ascontiguousarray(img)).resize((w, h), Image.BILINEAR))
    return np.ascontiguousarray(resized.transpose(2, 0, 1))


def _bilinear_weights(positions: np.ndarray, size: int) -> np.ndarray:
    """[len(positions), size]: bilinear weights of each sample position (pixel units) over 0..size-1; taps
    outside the grid get no weight (``grid_sample``'s zero padding)."""
    left = np.floor(positions)
    frac = (positions - left).astype(np.float32)
    left = left.astype(np.int64)
    weights = np.zeros((len(positions), size), np.float32)
    rows = np.arange(len(positions))
    for tap, w in ((left, 1.0 - frac), (left + 1, frac)):
        inside = (tap >= 0) & (tap < size)
        weights[rows[inside], tap[inside]] += w[inside]
    return weights


def paste_mask(mask: np.ndarray, box: Sequence[float], height: int, width: int, threshold: float) -> np.ndarray:
    """[M, M] mask probabilities in ``box`` -> [height, width] bool over the photo (see the module docstring)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    out = np.zeros((height, width), bool)
    xa, xb = max(int(np.floor(x0)) - 1, 0), min(int(np.ceil(x1)) + 1, width)
    ya, yb = max(int(np.floor(y0)) - 1, 0), min(int(np.ceil(y1)) + 1, height)
    if xb <= xa or yb <= ya or x1 <= x0 or y1 <= y0:
        return out
    size_y, size_x = mask.shape

    def sample_positions(start: int, stop: int, lo: float, hi: float, size: int) -> np.ndarray:
        g = (np.arange(start, stop, dtype=np.float32) + np.float32(0.5) - np.float32(lo)) \
            / np.float32(hi - lo) * 2 - 1                                    # grid_sample's [-1, 1]
        return ((g + 1) * size - 1) / 2                                      # align_corners=False

    wy = _bilinear_weights(sample_positions(ya, yb, y0, y1, size_y), size_y)
    wx = _bilinear_weights(sample_positions(xa, xb, x0, x1, size_x), size_x)
    out[ya:yb, xa:xb] = (wy @ mask.astype(np.float32) @ wx.T) >= threshold
    return out


def postprocess(outputs: Dict[str, np.ndarray], resized_hw: Tuple[int, int], photo_hw: Tuple[int, int],
                labels: Sequence[str], mask_threshold: float) -> List[Detection]:
    """The graph's outputs for a photo resized to ``resized_hw`` -> its detections in the photo's pixels."""
    height, width = photo_hw
    boxes = outputs["boxes"].astype(np.float32).copy()
    boxes[:, 0::2] *= np.float32(width / resized_hw[1])
    boxes[:, 1::2] *= np.float32(height / resized_hw[0])
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
    keep = (boxes[:, 2] - boxes[:, 0] > 0) & (boxes[:, 3] - boxes[:, 1] > 0)
    masks: List[Optional[Dict]] = [None] * int(keep.sum())
    if "masks" in outputs:
        masks = [encode_mask(paste_mask(m[0], b, height, width, mask_threshold))
                 for m, b in zip(outputs["masks"][keep], boxes[keep])]
    return [Detection(tuple(float(v) for v in b), labels[int(c)], float(s), float(o), m)
            for b, c, s, o, m in zip(boxes[keep], outputs["classes"][keep], outputs["scores"][keep],
                                     outputs["objectness"][keep], masks)]


class PortableDetector:
    """An exported detector (a bundle's ``detector`` part, :mod:`.engine`) in an ONNX Runtime session."""

    def __init__(self, graph: Path, spec: Dict, device: str = "cpu", threads: Optional[int] = None) -> None:
        from ..utils.onnx_runtime import session

        self.spec = spec
        # ReshapeFusion turns the mask head's GroupNorm reshape (its sizes computed from the input's shape,
        # onnx_export.BatchSafeGroupNorm) back into [0, G, -1], which fails for a photo without detections
        self.session = session(graph, device, threads, disabled_optimizers=["ReshapeFusion"])
        self.outputs = [o.name for o in self.session.get_outputs()]

    def detect(self, rgb: np.ndarray) -> List[Detection]:
        """The detections of one [H, W, 3] uint8 RGB photo."""
        inp = self.spec["input"]
        image = graph_input(rgb, int(inp["min_size"]), int(inp["max_size"]), inp["format"])
        values = self.session.run(self.outputs, {"image": image})
        return postprocess(dict(zip(self.outputs, values)), image.shape[1:], rgb.shape[:2], self.spec["labels"],
                           float(self.spec["mask_threshold"]))
