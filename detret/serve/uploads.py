"""The inputs of ``POST /api/search``, checked; a :class:`RequestError` says which field and why.

Limits (``Limits``) are the service's safe defaults: an upload is read up to ``max_upload_bytes``
and refused past it; a photo whose header announces more than ``max_pixels`` is refused before
it is decoded (a small file that decodes to a huge image); ``k`` is at most ``max_k``.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from ..catalogue.products_csv import parse_box
from ..data.boxes import BoxXYXY
from ..data.images import PhotoError, decode_rgb
from ..detect.crops import given_box_crop
from ..errors import InputError


@dataclass(frozen=True)
class Limits:
    max_upload_bytes: int = 16 * 2**20
    max_pixels: int = 40_000_000
    max_k: int = 100
    max_admin_bytes: int = 512 * 2**20    # a POST /api/catalogue: the product list and its photos


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


def decode_photo(data: bytes, filename: str, limits: Limits) -> np.ndarray:
    if not data:
        raise RequestError(400, f"photo ({filename}): the file is empty")
    try:
        return decode_rgb(io.BytesIO(data), filename, max_pixels=limits.max_pixels)
    except PhotoError as exc:
        status = 413 if exc.reason.startswith("too many pixels") else 400
        raise RequestError(status, f"photo ({filename}): {exc.reason}") from None


def check_category(category: Optional[str], known: Sequence[str]) -> Optional[str]:
    category = (category or "").strip() or None
    if category is not None and category not in known:
        raise RequestError(400, f"category: {category!r} is not a category of this catalogue; known: "
                                f"{', '.join(known)}")
    return category


def check_box(text: Optional[str], category: Optional[str], photo: np.ndarray) -> Optional[BoxXYXY]:
    try:
        box = parse_box(text or "", "box")
    except InputError as exc:
        raise RequestError(400, str(exc)) from None
    if box is None:
        return None
    if category is None:
        raise RequestError(400, "box: give the category of the boxed garment too")
    w, h = photo.shape[1], photo.shape[0]
    if given_box_crop(box, (w, h)) is None:
        raise RequestError(400, f"box: {list(box)} lies outside the photo ({w}x{h} px)")
    return box


def check_k(k: int, limits: Limits) -> int:
    if not 1 <= k <= limits.max_k:
        raise RequestError(400, f"k: {k} is not between 1 and {limits.max_k}")
    return k
