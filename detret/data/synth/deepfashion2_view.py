"""The synthetic test products in DeepFashion2's format: ``<out>/deepfashion2/validation/{annos,image}``.

So that DeepFashion2's evaluation (both directions, broken down by annotation level, Ibrahim et al.
Tables 2 and 3) runs on the embedded data too. Written from the synthetic Exact Street2Shop files, for
the test products of the categories DeepFashion2 has (tops, outerwear, dresses, skirts, pants,
leggings; bags, belts, eyewear, footwear and hats have no DeepFashion2 category):

- one consumer record ("user") per (street photo, product): the product's annotated box; one shop
  record per shop photo: the whole photo (the generator does not write a shop photo's box);
- ``pair_id`` = the product id and ``style`` = 1 for every item: a consumer item matches the shop
  items of its product, as Street2Shop's test pairs say;
- the four levels, derived from what the data holds (DeepFashion2 annotates them by eye; these
  thresholds are ours): ``scale`` from the box's share of the photo (< 0.1 small, < 0.3 moderate,
  else large); ``occlusion`` from the share of the box covered by the other labelled garments of
  the photo (< 0.1 slight, < 0.4 medium, else heavy); ``zoom_in`` from the sides of the photo the
  box touches (none: no, one: medium, two or more: large); ``viewpoint`` 2 (frontal: the
  synthetic figures face the camera) for street photos, and for shop photos 2 when the generator
  drew the garment on a figure and 1 (no wear) when it drew it alone, recomputed from the
  generator's seeded stream.

Images are hard links to the Street2Shop photos where the file system allows (copies otherwise).
"""
from __future__ import annotations

import json
import os
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from PIL import Image

from ...runs.atomic import atomic_write_text
from ..boxes import BoxXYXY
from ..street2shop import load_street2shop

# Street2Shop category -> DeepFashion2 category (1-based id in detret/resources/categories.yaml's order)
TO_DEEPFASHION2 = {"tops": "short_sleeved_shirt", "outerwear": "long_sleeved_outwear",
                   "dresses": "short_sleeved_dress", "skirts": "skirt", "pants": "trousers", "leggings": "trousers"}
SPLIT = "validation"


def _share(box: BoxXYXY, width: int, height: int) -> float:
    return (box[2] - box[0]) * (box[3] - box[1]) / float(width * height)


def scale_level(box: BoxXYXY, width: int, height: int) -> int:
    share = _share(box, width, height)
    return 1 if share < 0.1 else 2 if share < 0.3 else 3


def occlusion_level(box: BoxXYXY, others: Sequence[BoxXYXY]) -> int:
    """From the largest share of the box that another garment's box covers."""
    area = (box[2] - box[0]) * (box[3] - box[1])
    covered = max([max(0.0, min(box[2], o[2]) - max(box[0], o[0])) * max(0.0, min(box[3], o[3]) - max(box[1], o[1]))
                   for o in others] or [0.0]) / area
    return 1 if covered < 0.1 else 2 if covered < 0.4 else 3


def zoom_level(box: BoxXYXY, width: int, height: int, margin: float = 1.0) -> int:
    touching = sum([box[0] <= margin, box[1] <= margin, box[2] >= width - margin, box[3] >= height - margin])
    return 1 if touching == 0 else 2 if touching == 1 else 3


def _item(category: str, categories: Sequence[str], box: BoxXYXY, scale: int, occlusion: int, zoom: int,
          viewpoint: int) -> Dict:
    df2 = TO_DEEPFASHION2[category]
    return {"category_id": categories.index(df2) + 1, "category_name": df2, "style": 1,
            "bounding_box": [float(v) for v in box], "scale": scale, "occlusion": occlusion, "zoom_in": zoom,
            "viewpoint": viewpoint}


def _link(src: Path, dst: Path) -> None:
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _size(path: Path) -> Tuple[int, int]:
    with Image.open(path) as img:
        return img.size


def records(street2shop: Path, categories: Sequence[str], shop_on_figure) -> List[Tuple[int, Dict]]:
    """(Street2Shop photo id, DeepFashion2 annotation) of every record, consumer ones first."""
    data = load_street2shop(street2shop)
    boxes_by_photo: Dict[int, List[BoxXYXY]] = defaultdict(list)  # every labelled garment of a street photo
    for q in data.train_queries + data.test_queries:
        if q.box_xyxy is not None:
            boxes_by_photo[q.photo_id].append(q.box_xyxy)
    out, test_products = [], set()
    for cat in TO_DEEPFASHION2:
        for q in (q for q in data.test_queries if q.category == cat and q.box_xyxy is not None):
            width, height = _size(data.photo_path(q.photo_id))
            others = [o for o in boxes_by_photo[q.photo_id] if o != q.box_xyxy]
            item = _item(cat, categories, q.box_xyxy, scale_level(q.box_xyxy, width, height),
                         occlusion_level(q.box_xyxy, others), zoom_level(q.box_xyxy, width, height), 2)
            out.append((q.photo_id, {"source": "user", "pair_id": q.product_id, "item1": item}))
            test_products.add((cat, q.product_id))
    for cat in TO_DEEPFASHION2:
        for g in data.gallery[cat]:
            if (cat, g.product_id) in test_products:
                width, height = _size(data.photo_path(g.photo_id))
                item = _item(cat, categories, (0, 0, width, height), 3, 1, 3, 2 if shop_on_figure(g.photo_id) else 1)
                out.append((g.photo_id, {"source": "shop", "pair_id": g.product_id, "item1": item}))
    return out


def write_deepfashion2_view(out: Path, categories: Sequence[str], shop_on_figure) -> Dict[str, int]:
    """Write ``<out>/deepfashion2/validation`` (see the module docstring); ``shop_on_figure(photo_id)``
    says whether the generator drew a shop photo on a figure. Returns the counts per source."""
    split = out / "deepfashion2" / SPLIT
    (split / "annos").mkdir(parents=True, exist_ok=True)
    (split / "image").mkdir(parents=True, exist_ok=True)
    counts: Dict[str, int] = defaultdict(int)
    for n, (photo, doc) in enumerate(records(out / "street2shop", categories, shop_on_figure), start=1):
        _link(out / "street2shop" / "images" / f"{photo:09d}.jpg", split / "image" / f"{n:06d}.jpg")
        atomic_write_text(split / "annos" / f"{n:06d}.json", json.dumps(doc) + "\n", fsync=False)
        counts[doc["source"]] += 1
    return dict(counts)
