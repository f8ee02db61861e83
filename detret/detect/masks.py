"""Mask crops: the chosen detection's Mask R-CNN mask removes the background before a crop is embedded.

- A mask travels as COCO run-length encoding (``{"size": [H, W], "counts": "<str>"}``, pycocotools'
  compressed form, the counts as text so that it is plain JSON) of a boolean [H, W] over the whole
  upright photo: :func:`encode_mask`, :func:`decode_mask`.
- :func:`apply_mask`: the photo with every pixel outside the mask set to the fill: ``white`` (a garment
  cut out onto a white page, as shop photos are), or ``mean`` (ImageNet's mean colour, which the
  networks' normalisation maps to 0: no signal at all).
- :func:`matching_detection`: a street photo is cut by its annotated box (Section 3.3); its mask is the
  one of the detection of the box's category that overlaps the box most (IoU >= ``MIN_IOU``), else none
  and the crop stays a box.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence

import numpy as np

from ..config.choices import CropShapeChoice, MaskFill
from ..data.boxes import BoxXYXY, crop_rgb
from ..errors import InputError

CROP_SHAPES = tuple(c.value for c in CropShapeChoice)
MASK_FILLS = {MaskFill.WHITE.value: (255, 255, 255), MaskFill.MEAN.value: (124, 116, 104)}   # mean: ImageNet's x 255
MIN_IOU = 0.5


def encode_mask(mask: np.ndarray) -> Dict:
    """[H, W] bool -> {"size": [H, W], "counts": str}."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_mask(rle: Dict) -> np.ndarray:
    """{"size", "counts"} -> [H, W] bool."""
    from pycocotools import mask as mask_utils

    try:
        return mask_utils.decode({"size": list(rle["size"]), "counts": str(rle["counts"]).encode("ascii")}) > 0
    except (KeyError, TypeError, ValueError, UnicodeEncodeError) as exc:
        raise InputError(f"not a mask in run-length encoding ({type(exc).__name__}: {exc})") from exc


def check_fill(fill: str, where: str = "mask fill") -> None:
    if fill not in MASK_FILLS:
        raise InputError(f"{where} {fill!r}: expected one of {', '.join(MASK_FILLS)}")


def apply_mask(rgb: np.ndarray, rle: Optional[Dict], fill: str = "white") -> np.ndarray:
    """[H, W, 3] uint8 with the pixels outside the mask set to ``fill`` (a copy); the photo itself when the
    mask is None. A mask of another size than the photo (never from detret's own detections) is refused."""
    check_fill(fill)
    if rle is None:
        return rgb
    mask = decode_mask(rle)
    if mask.shape != rgb.shape[:2]:
        raise InputError(f"a mask of {mask.shape[1]}x{mask.shape[0]} px for a photo of {rgb.shape[1]}x"
                         f"{rgb.shape[0]} px")
    out = rgb.copy()
    out[~mask] = MASK_FILLS[fill]
    return out


def _iou(a: BoxXYXY, b: BoxXYXY) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def matching_detection(detections: Sequence, box: BoxXYXY, labels: Sequence[str]) -> Optional[int]:
    """Index of the detection with a mask, one of ``labels``, overlapping ``box`` most (IoU >= MIN_IOU)."""
    best, best_iou = None, MIN_IOU
    for i, det in enumerate(detections):
        if det.mask is None or det.label not in labels:
            continue
        iou = _iou(tuple(det.box_xyxy), tuple(box))
        if iou >= best_iou:
            best, best_iou = i, iou
    return best


@dataclass(frozen=True)
class CropShape:
    """How a crop is cut: ``box`` (the box's pixels), or ``mask`` (the detection's mask removes the background,
    filled with ``fill``, then the box; a crop without a mask stays a box). ``detret/detect/masks.py``."""

    shape: str = "box"
    fill: str = "white"

    def __post_init__(self) -> None:
        if self.shape not in CROP_SHAPES:
            raise InputError(f"crop {self.shape!r}: expected one of {', '.join(CROP_SHAPES)}")
        check_fill(self.fill)

    def cut(self, rgb: np.ndarray, box: Optional[BoxXYXY], mask: Optional[Dict]) -> np.ndarray:
        """[H, W, 3] uint8 -> the crop (the box's pixels; the whole photo when box is None)."""
        masked = apply_mask(rgb, mask, self.fill) if self.shape == "mask" else rgb
        return crop_rgb(masked, box)


BOX = CropShape()
