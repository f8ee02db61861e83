"""``<street2shop>/meta/shop_boxes.json``: where each shop photo shows its product (synthetic data only).

Exact Street2Shop annotates boxes on street photos only. The embedded generator knows where it drew the
product in every shop photo and writes it here, so that a detector's crops of shop photos can be checked
against the truth (``detect-shop/summary.json``: the share of photos whose chosen crop covers the
product). Format: a JSON list of ``{"photo": id, "product": id, "category": name, "box_xyxy": [x0, y0,
x1, y1], "piece_boxes_xyxy": [[x0, y0, x1, y1], ...]}``, boxes in pixels of the photo as stored:
``box_xyxy`` around the whole product, ``piece_boxes_xyxy`` around each piece drawn separately (the two
shoes of a pair; one piece, the same box, for any other product).

A crop covers the product when it matches the whole product or one of its pieces: ModaNet, and so the
detector trained on it, boxes each shoe on its own, and a crop of one shoe of a pair shows the product
(the two are mirror images). ``piece_boxes_xyxy`` is absent from files written before it existed: then
the whole product's box is the only one.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..errors import InputError
from ..runs.atomic import atomic_write_json
from .boxes import BoxXYXY

SHOP_BOXES = Path("meta") / "shop_boxes.json"


def write_shop_boxes(street2shop_root: Path, rows: List[Dict]) -> None:
    atomic_write_json(Path(street2shop_root) / SHOP_BOXES, rows, fsync=False)


def read_shop_boxes(street2shop_root: Path) -> Optional[Dict[Tuple[str, int], Tuple[BoxXYXY, ...]]]:
    """(category, photo id) -> the boxes a crop may match (the whole product's, then its pieces'), or None
    when the dataset has no such file (real data)."""
    path = Path(street2shop_root) / SHOP_BOXES
    if not path.is_file():
        return None
    try:
        return {(r["category"], int(r["photo"])): _boxes(r) for r in json.loads(path.read_text())}
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: not a list of {{photo, product, category, box_xyxy, piece_boxes_xyxy}} "
                         f"records ({exc})") from exc


def _boxes(record: Dict) -> Tuple[BoxXYXY, ...]:
    boxes = [record["box_xyxy"]] + [b for b in record.get("piece_boxes_xyxy", []) if b != record["box_xyxy"]]
    for box in boxes:
        if len(box) != 4:
            raise ValueError(f"photo {record['photo']}: a box has {len(box)} numbers, not 4")
    return tuple(tuple(float(v) for v in box) for box in boxes)
