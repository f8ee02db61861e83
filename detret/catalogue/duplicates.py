"""Duplicate photos at ``catalogue add``: a new photo that is a copy of a photo the catalogue (or the same add)
already holds, byte for byte under another product (``exact``; under the same product it is simply already
present), or as a re-encoding, a resize or a small crop of it under any product (``near``). Distinct photos
of one product (another view, another background) are not duplicates. Photos are compared within their
category.

How a near-duplicate is found, in O(new photos):

1. candidates: the stored photos of the same category whose vectors are nearest to the new photo's
   (``CANDIDATES`` of them, cosine >= ``MIN_COSINE``), through the catalogue's own search, and the earlier
   new photos of the add by the same test on their vectors;
2. verification on pixels (:func:`picture_difference`): one photo is taken as a crop of the other keeping at
   least ``MIN_SHARE`` of each side, resized to any size; the best alignment (the crop's size searched on a
   grid, its position by OpenCV's template matching) leaves a mean absolute difference, in 0..255 levels
   per channel, at most ``MAX_DIFFERENCE`` for a duplicate.

Why not a global perceptual hash (``imagehash``'s pHash; dHash and wHash did no better): on the demo's shop
photos (``tools/benchmark.py day-one``, 25 products with several photos), copies (JPEG q40, half size, 6%
and 9% crops, 8% off one side, crop + resize + re-encode) moved pHash by up to 30 of 64 bits while two
distinct photos of one product differed by as little as 6, so no threshold separates them; the aligned
difference does (copies: at most 3.2; distinct photos of one product: at least 8.1; threshold 5).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..data.images import PhotoError, read_rgb

DUPLICATE_POLICIES = ("keep", "skip", "off")   # keep and report, skip and report, do not look
CANDIDATES = 5          # nearest stored photos verified per new photo
MIN_COSINE = 0.8        # of the descriptors, for a pair to be verified on pixels
MIN_SHARE = 0.8         # a crop keeps at least this share of each side
MAX_DIFFERENCE = 5.0    # mean absolute difference (0..255) of a duplicate, aligned
WORK_PX = 96            # the larger photo's long side when compared
DECODED_PHOTOS = 32     # photos kept decoded while an add is checked


@dataclass
class NewEntry:
    """A photo the add is about to store: its line, content, product, category, vector and pixels' path."""

    line: int
    source: str
    product: str
    category: str
    sha256: str
    vector: np.ndarray
    path: Path


@dataclass
class Duplicate:
    kind: str                        # "exact" or "near"
    of: Dict                         # {"photo_id", "product", "file"} or {"line", "photo", "product"}
    difference: float = 0.0          # the aligned mean absolute difference (0 for exact)


def _small(rgb: np.ndarray, scale: float) -> np.ndarray:
    h, w = rgb.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA).astype(np.float32)


def _difference_at(inner: np.ndarray, outer: np.ndarray, share: float, inner_aspect: float) -> Optional[float]:
    """Mean absolute difference of ``inner`` resized to ``share`` of ``outer``'s width at its best position."""
    oh, ow = outer.shape[:2]
    tw, th = share * ow, share * ow * inner_aspect
    if th > oh + 0.5 or th < MIN_SHARE * oh - 0.5:
        return None
    tw_px, th_px = max(1, min(ow, round(tw))), max(1, min(oh, round(th)))
    template = cv2.resize(inner, (tw_px, th_px), interpolation=cv2.INTER_AREA)
    _, _, (x, y), _ = cv2.minMaxLoc(cv2.matchTemplate(outer, template, cv2.TM_SQDIFF))
    return float(np.abs(outer[y:y + th_px, x:x + tw_px] - template).mean())


def _best_share(inner: np.ndarray, outer: np.ndarray, shares: np.ndarray, work_px: int) -> Tuple[float, float]:
    """(smallest difference, its share) of ``inner`` as a crop of ``outer`` at ``shares``, both at ``work_px``."""
    aspect = inner.shape[0] / inner.shape[1]
    big = _small(outer, work_px / max(outer.shape[:2]))
    small = _small(inner, min(1.0, 2 * work_px / max(inner.shape[:2])))
    found = [(d, s) for s in shares if (d := _difference_at(small, big, s, aspect)) is not None]
    return min(found) if found else (float("inf"), -1.0)


def _crop_difference(inner: np.ndarray, outer: np.ndarray) -> Optional[float]:
    """The smallest difference of ``inner`` taken as a resized crop of ``outer`` (None: shapes exclude it): the
    crop's size searched coarsely at half the working size, then finely around the best at the working size
    (three times fewer pixels compared than a fine search at full size)."""
    _, share = _best_share(inner, outer, np.linspace(MIN_SHARE, 1.0, 21), WORK_PX // 2)
    if share < 0:
        return None
    fine = np.linspace(max(MIN_SHARE, share - 0.02), min(1.0, share + 0.02), 11)
    difference, share = _best_share(inner, outer, fine, WORK_PX)
    return None if share < 0 else difference


def picture_difference(a: np.ndarray, b: np.ndarray) -> Optional[float]:
    """How far two photos ([H, W, 3] uint8) are from being one picture: the mean absolute difference after the
    best alignment of either as a (resized) crop of the other; None when neither can be a crop of the other.
    When the first alignment already shows one picture, the second is not tried."""
    first = _crop_difference(a, b)
    if first is not None and first <= MAX_DIFFERENCE:
        return first
    found = [d for d in (first, _crop_difference(b, a)) if d is not None]
    return min(found) if found else None


def _pixels(path: Path, cache: "OrderedDict[Path, Optional[np.ndarray]]") -> Optional[np.ndarray]:
    """The photo's pixels, the last ``DECODED_PHOTOS`` decoded kept (an add of many photos stays bounded)."""
    if path in cache:
        cache.move_to_end(path)
        return cache[path]
    try:
        rgb = read_rgb(path)
    except PhotoError:
        rgb = None
    cache[path] = rgb
    while len(cache) > DECODED_PHOTOS:
        cache.popitem(last=False)
    return rgb


def _is_near(a: Path, b: Path, cache: Dict) -> Optional[float]:
    pa, pb = _pixels(a, cache), _pixels(b, cache)
    if pa is None or pb is None:
        return None
    difference = picture_difference(pa, pb)
    return difference if difference is not None and difference <= MAX_DIFFERENCE else None


def find_duplicates(entries: Sequence[NewEntry], stored_exact: Dict[str, Dict], search, stored_rows,
                    root: Path) -> Dict[int, Duplicate]:
    """Entry index -> what it duplicates. ``stored_exact``: sha256 -> a stored photo of that content
    ({"photo_id", "product", "file"}); ``search(category, vectors [n, D], k) -> (scores, ids)`` searches the
    stored photos; ``stored_rows(ids) -> {id: row}`` gives the visible ones (file, product)."""
    out: Dict[int, Duplicate] = {}
    first_of: Dict[str, int] = {}
    for i, e in enumerate(entries):
        if e.sha256 in stored_exact and stored_exact[e.sha256]["product"] != e.product:
            out[i] = Duplicate("exact", stored_exact[e.sha256])
        elif e.sha256 in first_of and entries[first_of[e.sha256]].product != e.product:
            j = first_of[e.sha256]
            out[i] = Duplicate("exact", {"line": entries[j].line, "photo": entries[j].source,
                                         "product": entries[j].product})
        first_of.setdefault(e.sha256, i)
    cache: "OrderedDict[Path, Optional[np.ndarray]]" = OrderedDict()
    by_category: Dict[str, List[int]] = {}
    for i, e in enumerate(entries):
        by_category.setdefault(e.category, []).append(i)
    for category, idx in by_category.items():
        _near_stored(entries, [i for i in idx if i not in out], category, search, stored_rows, root, cache, out)
        _near_in_add(entries, [i for i in idx if i not in out], cache, out)
    return out


def _near_stored(entries, idx: List[int], category: str, search, stored_rows, root: Path, cache, out) -> None:
    if not idx:
        return
    scores, ids = search(category, np.stack([entries[i].vector for i in idx]).astype(np.float32), CANDIDATES)
    rows = stored_rows(sorted({int(j) for j in ids.ravel() if j >= 0}))
    for row_i, i in enumerate(idx):
        for score, j in zip(scores[row_i], ids[row_i]):
            r = rows.get(int(j))
            if j < 0 or score < MIN_COSINE or r is None:
                continue
            difference = _is_near(entries[i].path, root / r["file"], cache)
            if difference is not None:
                out[i] = Duplicate("near", {"photo_id": int(j), "product": r["product"], "file": r["file"]},
                                   round(difference, 2))
                break


def _near_in_add(entries, idx: List[int], cache, out, chunk: int = 1024) -> None:
    """Each new photo against the earlier new photos of its category (vectors first, then pixels): blocks of
    ``chunk`` rows of the similarity matrix (O(n^2 D) for n new photos of a category, in BLAS)."""
    if len(idx) < 2:
        return
    vectors = np.stack([entries[i].vector for i in idx]).astype(np.float32)
    for start in range(1, len(idx), chunk):
        block = vectors[start:start + chunk] @ vectors[:start + chunk].T      # [rows, earlier and these]
        for r in range(block.shape[0]):
            a = start + r
            similar = block[r, :a]
            nearest = np.argpartition(-similar, CANDIDATES)[:CANDIDATES] if a > CANDIDATES else range(a)
            for b in sorted(nearest, key=lambda b: -similar[b]):
                i, j = idx[a], idx[int(b)]
                if similar[b] < MIN_COSINE or j in out:
                    continue
                difference = _is_near(entries[i].path, entries[j].path, cache)
                if difference is not None:
                    out[i] = Duplicate("near", {"line": entries[j].line, "photo": entries[j].source,
                                                "product": entries[j].product}, round(difference, 2))
                    break
