"""The box type every stage passes around."""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

# (x0, y0, x1, y1) in pixels of the upright photo; x1 > x0 and y1 > y0 for a usable box.
BoxXYXY = Tuple[float, float, float, float]


def crop_rgb(rgb: np.ndarray, box_xyxy: Optional[BoxXYXY]) -> np.ndarray:
    """[H, W, 3] -> the box's pixels (the whole photo when box is None or empty after clipping)."""
    if box_xyxy is None:
        return rgb
    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = box_xyxy
    x0, y0 = int(np.floor(max(0.0, min(x0, w)))), int(np.floor(max(0.0, min(y0, h))))
    x1, y1 = int(np.ceil(max(0.0, min(x1, w)))), int(np.ceil(max(0.0, min(y1, h))))
    if x1 - x0 < 1 or y1 - y0 < 1:
        return rgb
    return rgb[y0:y1, x0:x1]
