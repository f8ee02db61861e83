"""The descriptor artifact of `detret embed`.

In ``<run_dir>/embed-<name>/``, for each side (``gallery``, ``queries``):

- ``<side>.npy``: float32 [N, D], C-contiguous, rows L2-normalised;
- ``<side>_rows.jsonl``: line i describes row i:
  ``{"photo_id", "product_id", "product_ids", "category", "domain": "shop"|"street", "record": int|null,
  "crop_rule": "detection"|"fallback"|"ground_truth"|"full", "box_xyxy": [x0, y0, x1, y1]|null}``
  (``record``: the query's index in ``test_pairs_<cat>.json``; null for gallery rows;
  ``product_ids``: every product a gallery photo is listed for in its category, ``product_id``
  first; absent in files written before it, read as ``[product_id]``);
- ``skipped.jsonl``: photos that could not be embedded, with the reason (they have no row).

``models.json`` lists the checkpoints (path, sha256, meta) whose descriptors were
concatenated, in order, and the scales.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..data.boxes import BoxXYXY
from ..errors import InputError
from ..runs.atomic import atomic_path, atomic_write_text


@dataclass(frozen=True)
class Row:
    photo_id: int
    product_id: int
    category: str
    domain: str
    record: Optional[int]
    crop_rule: str
    box_xyxy: Optional[BoxXYXY]
    product_ids: Tuple[int, ...] = ()  # a shop photo listed for several products of its category shows each

    @property
    def products(self) -> Tuple[int, ...]:
        return self.product_ids or (self.product_id,)

    def to_json(self) -> Dict:
        return {**asdict(self), "product_ids": list(self.products)}


def rows_by_category(rows: List[Row]) -> Dict[str, List[int]]:
    """Category -> its row indices, in row order (the order of that category's search index)."""
    out: Dict[str, List[int]] = {}
    for i, r in enumerate(rows):
        out.setdefault(r.category, []).append(i)
    return out


def write_descriptors(folder: Path, side: str, descriptors: np.ndarray, rows: List[Row]) -> None:
    if descriptors.shape[0] != len(rows):
        raise ValueError(f"{side}: {descriptors.shape[0]} descriptors for {len(rows)} rows")
    arr = np.ascontiguousarray(descriptors, dtype=np.float32)
    with atomic_path(Path(folder) / f"{side}.npy") as tmp:
        np.save(tmp, arr)
    atomic_write_text(Path(folder) / f"{side}_rows.jsonl",
                      "".join(json.dumps(r.to_json(), sort_keys=True) + "\n" for r in rows))


def read_descriptors(folder: Path, side: str) -> Tuple[np.ndarray, List[Row]]:
    folder = Path(folder)
    arr = np.load(folder / f"{side}.npy", allow_pickle=False)
    if arr.dtype != np.float32 or arr.ndim != 2:
        raise InputError(f"{folder / (side + '.npy')}: expected float32 [N, D], got {arr.dtype} {arr.shape}")
    rows = []
    with open(folder / f"{side}_rows.jsonl", encoding="utf-8") as fh:
        for line in fh:
            obj = json.loads(line)
            box = obj.get("box_xyxy")
            rows.append(Row(obj["photo_id"], obj["product_id"], obj["category"], obj["domain"], obj.get("record"),
                            obj["crop_rule"], None if box is None else tuple(box),
                            tuple(obj.get("product_ids") or (obj["product_id"],))))
    if len(rows) != arr.shape[0]:
        raise InputError(f"{folder}: {side}.npy has {arr.shape[0]} rows but {side}_rows.jsonl has {len(rows)}")
    return np.ascontiguousarray(arr), rows


def read_skipped(folder: Path) -> List[Dict]:
    """``skipped.jsonl`` of a descriptor run: {"side", "category", "photo_id", "reason"} per photo left out."""
    path = Path(folder) / "skipped.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
