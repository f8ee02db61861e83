"""``<street2shop>/meta/shop_boxes.json``: where each shop photo shows its product (synthetic data only).

Exact Street2Shop annotates boxes on street photos only. The embedded generator knows where it drew the
product in every shop photo and writes it here, so that a detector's crops of shop photos can be checked
against the truth (``detect-shop/summary.json``: the share of photos whose chosen crop covers the
product). Format: a JSON list of ``{"photo": id, "product": id, "category": name, "box_xyxy": [x0, y0,
x1, y1]}``, the box in pixels of the photo as stored (a pair of shoes: the box around both).
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


def read_shop_boxes(street2shop_root: Path) -> Optional[Dict[Tuple[str, int], BoxXYXY]]:
    """(category, photo id) -> the product's box, or None when the dataset has no such file (real data)."""
    path = Path(street2shop_root) / SHOP_BOXES
    if not path.is_file():
        return None
    try:
        rows = json.loads(path.read_text())
        return {(r["category"], int(r["photo"])): tuple(float(v) for v in r["box_xyxy"]) for r in rows}
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: not a list of {{photo, product, category, box_xyxy}} records ({exc})") from exc
