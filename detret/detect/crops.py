"""The crop policy of Kucer & Murray (Section 3.1), a pure function.

For a photo with ground-truth retrieval category c:

1. keep the detections whose proposal objectness is > `objectness_thresh`
   (0.5 in the paper) and whose predicted label is one of the detector labels
   mapped to c (e.g. footwear -> {footwear, boots});
2. take the one with the highest category score (ties: higher objectness,
   then larger clipped area, then earlier index, so the choice is deterministic);
3. if none is left, the box is the whole photo.

Boxes are clipped to the photo first; a detection left with less than a pixel
of width or height is ignored. Rules recorded with the crop: ``detection``,
``fallback`` (nothing qualified: whole photo), ``ground_truth`` (street queries
use their annotated box, Section 3.3), ``full`` (the "full" ablation policy).
Ablation policies: ``top1`` (best detection of any label, objectness filter
kept) and ``full`` (always the whole photo).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterator, Mapping, Optional, Sequence, Tuple

from ..data.boxes import BoxXYXY
from ..errors import InputError, UnknownNameError

RULES = ("detection", "fallback", "ground_truth", "full")
GIVEN_BOX = "given box"  # the rule of a crop a user gives at query or catalogue time (not a stage's rule)


@dataclass(frozen=True)
class Detection:
    box_xyxy: BoxXYXY        # pixels of the original photo
    label: str           # detector (ModaNet) label
    score: float         # probability of that label
    objectness: float    # sigmoid of the RPN proposal's logit
    # its Mask R-CNN mask over the whole photo, as run-length encoding (masks.py), when masks are recorded
    mask: Optional[Dict] = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Crop:
    box_xyxy: BoxXYXY
    rule: str                    # one of RULES
    detection: Optional[int]     # index of the chosen detection, if any


def clip_box(box: BoxXYXY, size_wh: Tuple[int, int]) -> BoxXYXY:
    w, h = size_wh
    x0, y0, x1, y1 = box
    return (min(max(x0, 0.0), w), min(max(y0, 0.0), h), min(max(x1, 0.0), w), min(max(y1, 0.0), h))


def _usable(box: BoxXYXY) -> bool:
    return box[2] - box[0] >= 1.0 and box[3] - box[1] >= 1.0


def whole_photo(size_wh: Tuple[int, int]) -> BoxXYXY:
    return (0.0, 0.0, float(size_wh[0]), float(size_wh[1]))


def select_crop(
    detections: Sequence[Detection],
    category: str,
    category_map: Mapping[str, Sequence[str]],
    size_wh: Tuple[int, int],
    *,
    objectness_thresh: float = 0.5,
    policy: str = "category",
) -> Crop:
    """The crop of one photo of retrieval category `category` (see module docstring)."""
    if policy == "full":
        return Crop(whole_photo(size_wh), "full", None)
    if policy not in ("category", "top1"):
        raise InputError(f"unknown crop policy {policy!r}; known: category, top1, full")
    if policy == "category":
        if category not in category_map:
            raise UnknownNameError(f"category {category!r} is not in the category map; "
                                   f"known: {', '.join(category_map)}")
        allowed = set(category_map[category])
    best = None
    for i, det, box in accepted_detections(detections, size_wh, objectness_thresh):
        if policy == "category" and det.label not in allowed:
            continue
        area = (box[2] - box[0]) * (box[3] - box[1])
        key = (det.score, det.objectness, area, -i)
        if best is None or key > best[0]:
            best = (key, i, box)
    if best is None:
        return Crop(whole_photo(size_wh), "fallback", None)
    return Crop(best[2], "detection", best[1])


def accepted_detections(detections: Sequence[Detection], size_wh: Tuple[int, int], objectness_thresh: float
                        ) -> Iterator[Tuple[int, Detection, BoxXYXY]]:
    """(index, detection, clipped box) of the detections the policy may choose from: objectness above the
    threshold and a box still at least a pixel wide and high once clipped (shop the look takes them all)."""
    for i, det in enumerate(detections):
        if det.objectness > objectness_thresh:
            box = clip_box(det.box_xyxy, size_wh)
            if _usable(box):
                yield i, det, box


def given_box_crop(box: BoxXYXY, size_wh: Tuple[int, int]) -> Optional[Crop]:
    """A box the user gives (``query --box``, a product list's ``box``, the service's ``box``), clipped,
    with the rule ``GIVEN_BOX``; None when nothing of it lies inside the photo."""
    clipped = clip_box(box, size_wh)
    return Crop(clipped, GIVEN_BOX, None) if _usable(clipped) else None


def ground_truth_crop(box: Optional[BoxXYXY], size_wh: Tuple[int, int]) -> Crop:
    """A street query's annotated box, clipped; a missing or empty box falls back to the whole photo."""
    if box is not None:
        clipped = clip_box(box, size_wh)
        if _usable(clipped):
            return Crop(clipped, "ground_truth", None)
    return Crop(whole_photo(size_wh), "fallback", None)
