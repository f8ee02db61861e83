"""Training data of the retrieval network: street crops against shop crops.

- Street crops: the train pairs' photos cut by their annotated box (a zero-size
  box cannot be cut: that query is left out of training).
- Shop crops: the gallery photos of the training products, cut by the detection
  artifact (``shop_crops="detected"``, the paper's "DB C") or whole
  (``"full"``, "DB F"). Photos the detection stage skipped are left out.
- A product is ``(category, product_id)`` (Street2Shop numbers products per category).
- Validation: a seeded share of the training products is held out; their street
  crops are the validation queries, searched among the shop crops of all
  training products of their category.

Augmentation (the paper's): colour distortion, tilt, skew and a random crop
(the box jittered by up to 10% of its size before cutting).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torchvision.transforms import v2

from ..data.boxes import BoxXYXY
from ..data.images import read_rgb
from ..data.street2shop import Street2Shop
from ..detect.masks import BOX, CropShape
from .preprocess import normalise, resize_to_input, to_tensor

Product = Tuple[str, int]


@dataclass(frozen=True)
class CropItem:
    photo_id: int
    path: Path
    box_xyxy: Optional[BoxXYXY]
    category: str
    product: Product
    domain: str  # "street" or "shop"
    also_shows: Tuple[Product, ...] = ()  # a shop photo listed for several products of its category
    mask: Optional[Dict] = field(default=None, compare=False, repr=False)   # its detection's (mask crops)

    def shows(self, product: Product) -> bool:
        """Whether the crop shows `product` (a shop photo may show several: a positive for each)."""
        return product == self.product or product in self.also_shows


@dataclass
class TrainingSet:
    train_queries: List[CropItem]
    val_queries: List[CropItem]
    shop: List[CropItem]                       # shop crops of every training product (train + val)
    shop_by_product: Dict[Product, List[int]]  # product -> indices into shop
    skipped: Dict[str, int]


def load_shop_boxes(artifact: Path) -> Dict[Tuple[str, int], Optional[BoxXYXY]]:
    """(category, photo id) -> crop box from a detect-shop artifact; skipped photos are absent."""
    from ..detect.artifact import read_artifact

    return {(r.category, r.photo_id): tuple(r.crop.box_xyxy) for r in read_artifact(artifact) if r.status == "ok"}


def training_masks(layout) -> Dict[str, Dict]:
    """The masks of mask crops: {"shop": (category, photo id) -> mask, "street": (category, photo id, record)
    -> mask}, from the detect-shop and detect-street-train artifacts (``DETRET.DETECT.MASKS`` True)."""
    from ..detect.artifact import read_artifact
    from ..runs.layout import DETECTIONS_FILE
    from ..runs.stage import require_fresh

    require_fresh(layout.detect_shop, "the shop crops (detret detect --split shop)")
    street = layout.detect("street", "train")
    require_fresh(street, "the training street photos' detections (detret detect --split street --subset train): "
                          "mask crops need the detector's masks")
    from ..detect.stage import require_masks

    require_masks(layout.detect_shop)
    require_masks(street)
    shop = {(r.category, r.photo_id): r.mask for r in read_artifact(layout.shop_detections) if r.status == "ok"}
    return {"shop": shop, "street": {(r.category, r.photo_id, r.record): r.mask
                                     for r in read_artifact(street / DETECTIONS_FILE) if r.status == "ok"}}


def build_training_set(data: Street2Shop, shop_boxes: Optional[Dict[Tuple[str, int], BoxXYXY]], *,
                       val_fraction: float, seed: int, masks: Optional[Dict[str, Dict]] = None) -> TrainingSet:
    """`shop_boxes` None: whole shop photos ("full"); else the detected crops ("detected"). ``masks``
    (:func:`training_masks`): each crop's mask, for mask crops."""
    shop_masks, street_masks = (masks or {}).get("shop", {}), (masks or {}).get("street", {})
    skipped = {"zero_size_box": 0, "no_shop_photo": 0, "shop_not_detected": 0}
    queries: List[CropItem] = []
    for q in data.queries("train"):
        if q.box_xyxy is None:
            skipped["zero_size_box"] += 1
            continue
        if not data.positives(q):
            skipped["no_shop_photo"] += 1
            continue
        queries.append(CropItem(q.photo_id, data.photo_path(q.photo_id), q.box_xyxy, q.category,
                                (q.category, q.product_id), "street",
                                mask=street_masks.get((q.category, q.photo_id, q.record))))
    products = sorted({q.product for q in queries})
    rng = np.random.default_rng(seed)
    n_val = int(round(val_fraction * len(products)))
    val_products = {products[i] for i in rng.permutation(len(products))[:n_val]}
    shop: List[CropItem] = []
    by_product: Dict[Product, List[int]] = {}
    wanted = set(products)
    for cat in data.categories:
        for s in data.gallery[cat]:
            shown = [(cat, p) for p in s.products if (cat, p) in wanted]
            if not shown:
                continue
            if shop_boxes is None:
                box = None
            elif (cat, s.photo_id) in shop_boxes:
                box = shop_boxes[(cat, s.photo_id)]
            else:
                skipped["shop_not_detected"] += 1
                continue
            for product in shown:
                by_product.setdefault(product, []).append(len(shop))
            shop.append(CropItem(s.photo_id, data.photo_path(s.photo_id), box, cat, shown[0], "shop",
                                 tuple(shown[1:]), shop_masks.get((cat, s.photo_id))))
    train_q = [q for q in queries if q.product not in val_products and q.product in by_product]
    val_q = [q for q in queries if q.product in val_products and q.product in by_product]
    return TrainingSet(train_q, val_q, shop, by_product, skipped)


def augmentation() -> v2.Compose:
    """Colour distortion, tilt and skew, on [3, H, W] float tensors in [0, 1]."""
    return v2.Compose([
        v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.03),
        v2.RandomAffine(degrees=8, shear=(-8, 8, -8, 8), fill=0.5),
    ])


def jitter_box(box: Optional[BoxXYXY], size_wh: Tuple[int, int], rng: np.random.Generator, amount: float = 0.1
               ) -> BoxXYXY:
    """A random crop around `box` (the whole photo when None): each side moves by up to `amount` of the size."""
    w, h = size_wh
    x0, y0, x1, y1 = box if box is not None else (0.0, 0.0, float(w), float(h))
    bw, bh = x1 - x0, y1 - y0
    d = rng.uniform(-amount, amount, 4) * np.array([bw, bh, bw, bh])
    nx0, ny0, nx1, ny1 = x0 + d[0], y0 + d[1], x1 + d[2], y1 + d[3]
    if nx1 - nx0 < 2 or ny1 - ny0 < 2:
        return (x0, y0, x1, y1)
    return (max(0.0, nx0), max(0.0, ny0), min(float(w), nx1), min(float(h), ny1))


class CropReader:
    """Reads crops as network inputs; `augment` adds the training distortions."""

    def __init__(self, image_size: int, resize: str, mean: Sequence[float], std: Sequence[float],
                 shape: CropShape = BOX) -> None:
        self.image_size, self.resize, self.mean, self.std, self.shape = image_size, resize, mean, std, shape
        self._augment = augmentation()

    def __call__(self, item: CropItem, rng: Optional[np.random.Generator] = None) -> torch.Tensor:
        rgb = read_rgb(item.path)  # PhotoError names the file; the trainer skips it
        box = item.box_xyxy
        if rng is not None:
            box = jitter_box(box, (rgb.shape[1], rgb.shape[0]), rng)
        # Distortions are applied at the network's input size, not the photo's: the
        # same transforms, and on a CPU they cost a few times less (colour jitter on a
        # full street photo dominated an epoch).
        img = resize_to_input(to_tensor(self.shape.cut(rgb, box, item.mask)), self.image_size, self.resize)
        if rng is not None:
            # torchvision's random transforms draw from torch's global generator:
            # seed it from ours so that a seed gives the same batches.
            torch.manual_seed(int(rng.integers(2**31 - 1)))
            img = self._augment(img).clamp(0, 1)
        return normalise(img, self.mean, self.std)


def batches(n: int, batch_size: int, rng: np.random.Generator) -> List[np.ndarray]:
    """A seeded shuffle of range(n) cut into batches (the last may be smaller). Categories mix freely."""
    order = rng.permutation(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)] if n else []

