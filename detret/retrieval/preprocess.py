"""From a photo and a box to the network's input tensor (shared by training and embedding).

crop (pixels, xyxy, clipped to the photo) -> resize -> float [3, H, W] normalised by
the checkpoint's mean/std. ``resize="longest"``: the longer side becomes
`image_size` (aspect kept, as cirtorch and the paper at 800 px); ``"square"``:
`image_size` x `image_size` (every image the same shape, so batches stack).
Resizing and normalising are torchvision's (``transforms.v2.functional``), on float tensors:
bilinear with antialiasing, bit-identical to the ``F.interpolate`` call detret used before.
"""
from __future__ import annotations

from typing import Dict, Sequence, Tuple

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from ..data.boxes import crop_rgb   # the box crop lives with the boxes (detect/ uses it too); re-exported

__all__ = ["crop_rgb", "target_size", "to_tensor", "resize_to_input", "normalise", "resize_normalise"]


def target_size(h: int, w: int, image_size: int, resize: str) -> Tuple[int, int]:
    """(H', W') of the network input for an [H, W] crop (see the module docstring for ``resize``)."""
    if resize == "square":
        return image_size, image_size
    scale = image_size / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """[H, W, 3] uint8 -> [3, H, W] float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div_(255.0)


def resize_to_input(img: torch.Tensor, image_size: int, resize_mode: str) -> torch.Tensor:
    """[3, H, W] -> [3, H', W'] at the network's input size (bilinear, antialiased)."""
    size = target_size(img.shape[1], img.shape[2], image_size, resize_mode)
    return TF.resize(img, list(size), interpolation=TF.InterpolationMode.BILINEAR, antialias=True)


def normalise(img: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(img - mean) / std per channel."""
    return TF.normalize(img, list(mean), list(std))


def network_input(rgb: np.ndarray, meta: Dict, scale: float = 1.0) -> torch.Tensor:
    """[H, W, 3] uint8 RGB -> a retrieval network's input [3, H', W']: resized to ``scale`` times the image size of
    its checkpoint's ``meta`` and normalised with its mean and std."""
    size = max(8, int(round(meta["image_size"] * scale)))
    return resize_normalise(to_tensor(rgb), size, meta["resize"], meta["mean"], meta["std"])


def resize_normalise(img: torch.Tensor, image_size: int, resize_mode: str, mean: Sequence[float],
                     std: Sequence[float]) -> torch.Tensor:
    """[3, H, W] in [0, 1] -> [3, H', W'] resized (bilinear, antialiased) and normalised."""
    return normalise(resize_to_input(img, image_size, resize_mode), mean, std)
