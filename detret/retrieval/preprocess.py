"""From a photo and a box to the network's input tensor (shared by training and embedding).

crop (pixels, xyxy, clipped to the photo) -> resize -> float [3, H, W] normalised by
the checkpoint's mean/std. ``resize="longest"``: the longer side becomes
`image_size` (aspect kept, as cirtorch and the paper at 800 px); ``"square"``:
`image_size` x `image_size` (every image the same shape, so batches stack).
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from ..data.boxes import BoxXYXY



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


def target_size(h: int, w: int, image_size: int, resize: str) -> Tuple[int, int]:
    if resize == "square":
        return image_size, image_size
    scale = image_size / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """[H, W, 3] uint8 -> [3, H, W] float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div_(255.0)


def resize(img: torch.Tensor, image_size: int, resize: str) -> torch.Tensor:
    """[3, H, W] -> [3, H', W'] at the network's input size (bilinear, antialiased)."""
    size = target_size(img.shape[1], img.shape[2], image_size, resize)
    return F.interpolate(img[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]


def normalise(img: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    m = torch.tensor(mean, dtype=img.dtype).view(3, 1, 1)
    s = torch.tensor(std, dtype=img.dtype).view(3, 1, 1)
    return (img - m) / s


def resize_normalise(img: torch.Tensor, image_size: int, resize_mode: str, mean: Sequence[float],
                     std: Sequence[float]) -> torch.Tensor:
    """[3, H, W] in [0, 1] -> [3, H', W'] resized (bilinear, antialiased) and normalised."""
    return normalise(resize(img, image_size, resize_mode), mean, std)
