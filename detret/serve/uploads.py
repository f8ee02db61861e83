"""The inputs of ``POST /api/search``, checked; a :class:`RequestError` says which field and why.

Limits (``Limits``) are the service's safe defaults: an upload is read up to ``max_upload_bytes``
and refused past it; a photo whose header announces more than ``max_pixels``, a format other than
a photo's, or a size the models cannot read is refused before it is decoded; at most
``decode_slots`` photos are decoded at once, each reduced right away to ``max_side_px`` a side (the
paper's detector reads at most 1333 px, its descriptor 800 px); ``k`` is at most ``max_k``. The
gate (``limits.py``) applies the body limits, the upload count and the body deadline; the batcher
the search deadline (``search_timeout_s``).
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Optional, Sequence

from ..catalogue.products_csv import parse_box, shown
from ..data.boxes import BoxXYXY
from ..data.images import Decoded, PhotoError, decode_reduced
from ..detect.crops import given_box_crop
from ..errors import InputError
from .engine import MAX_GARMENTS


@dataclass(frozen=True)
class Limits:
    max_upload_bytes: int = 16 * 2**20
    max_pixels: int = 40_000_000          # a 40 MP photo; JPEGs are decoded at a reduced scale (draft mode)
    max_side_px: int = 1600               # photos are reduced to this long side right after decoding
    max_k: int = 100
    max_admin_bytes: int = 512 * 2**20    # an authorised POST /api/catalogue: the product list and its photos
    decode_slots: int = max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                            else os.cpu_count() or 1)   # photos decoded at once: the cores this process may use
    max_uploads: int = 16                 # requests with a body received or answered at once; more: 503
    body_timeout_s: float = 60.0          # a request body must arrive within this; else 408
    search_timeout_s: float = 30.0        # a search must be answered within this; else 503
    max_garments: int = MAX_GARMENTS      # shop the look: garments of one photo searched at most


class RequestError(Exception):
    """A request the service refuses: HTTP ``status`` and a message naming the field."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


async def read_limited(upload, limit: int, field_name: str) -> bytes:
    """The upload's bytes, refused (413) as soon as they pass ``limit``."""
    chunks, size = [], 0
    while True:
        chunk = await upload.read(1 << 20)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"{field_name}: larger than the limit of {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def decode_photo(data: bytes, filename: str, limits: Limits) -> Decoded:
    """The upload decoded and reduced to ``limits.max_side_px``; RequestError 400 (413: too many pixels)."""
    if not data:
        raise RequestError(400, f"photo ({shown(filename)}): the file is empty")
    try:
        return decode_reduced(io.BytesIO(data), filename, max_pixels=limits.max_pixels,
                              max_side_px=limits.max_side_px)
    except PhotoError as exc:
        status = 413 if exc.reason.startswith("too many pixels") else 400
        raise RequestError(status, f"photo ({shown(filename)}): {exc.reason}") from None


def check_category(category: Optional[str], known: Sequence[str], has_detector: bool = True) -> Optional[str]:
    category = (category or "").strip() or None
    if category is not None and category not in known:
        raise RequestError(400, f"category: {shown(category)} is not a category of this catalogue; known: "
                                f"{', '.join(known)}")
    if category is None and not has_detector:
        raise RequestError(400, "category: required; this catalogue has no detector (created with --no-detector), "
                                "so it cannot find the garments of a photo by itself (shop the look)")
    return category


def check_box(text: Optional[str], category: Optional[str], photo: Decoded) -> Optional[BoxXYXY]:
    """The box of the form field ``box`` (pixels of the photo sent) in pixels of the decoded, reduced photo."""
    try:
        box = parse_box(text or "", "box")
    except InputError as exc:
        raise RequestError(400, str(exc)) from None
    if box is None:
        return None
    if category is None:
        raise RequestError(400, "box: give the category of the boxed garment too")
    w, h = photo.size_wh
    if given_box_crop(box, (w, h)) is None:
        raise RequestError(400, f"box: {list(box)} lies outside the photo ({w}x{h} px)")
    sx, sy = photo.scale_xy
    scaled = (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)
    if given_box_crop(scaled, (photo.rgb.shape[1], photo.rgb.shape[0])) is None:
        raise RequestError(400, f"box: {list(box)} is under a pixel once the photo is reduced to "
                                f"{photo.rgb.shape[1]}x{photo.rgb.shape[0]} px")
    return scaled


def check_k(k: int, limits: Limits) -> int:
    if not 1 <= k <= limits.max_k:
        raise RequestError(400, f"k: {k} is not between 1 and {limits.max_k}")
    return k
