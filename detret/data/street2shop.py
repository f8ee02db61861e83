"""Exact Street2Shop (Kiapour et al., ICCV 2015) as published.

Reads ``root/meta/json/{retrieval,train_pairs,test_pairs}_<cat>.json`` for the
11 categories; photos are ``root/images/<photo id, 9 digits>.jpg``.

What one query is, and how the files' known defects are treated:

- **Query.** One record of ``test_pairs_<cat>.json`` is one query (the official
  protocol's count: bags 174 ... tops 763, 8,637 in all). A street photo that
  shows products of several categories therefore gives one query per category
  record, each searched within its own category; a (photo, product) with two
  boxes (a pair of shoes) gives two queries, one per box.
- **Identity.** Product ids are numbered per category (product 1283 of hats
  is not product 1283 of eyewear), so a product is ``(category, product_id)``.
  Within a category, train and test share no product and no street photo; a
  street photo can still be a train photo of one category and a test photo of
  another.
- **Boxes** are ``{"left", "top", "width", "height"}`` in pixels, sometimes
  written as floats (``676.0``); they become ``box_xyxy`` floats. A box of zero
  width or height has ``box_xyxy = None``: such a query is cropped to the whole
  photo, and training skips it (``LoadReport.zero_size_boxes`` counts them).
  Boxes running past the photo are clipped when the photo is decoded (the
  loader does not open photos).
- **Gallery.** ``gallery[cat]`` holds each shop photo of ``retrieval_<cat>.json``
  once (a repeated record is dropped and counted). The positives of a query are
  the gallery photos listed for its product in its category. A photo listed for
  several products of one category (an outfit shot) is one gallery row showing all
  of them (``ShopPhoto.product_ids``): a positive for each.
- **Products with no gallery photo.** Their queries have no positive: AP is
  undefined for them, so evaluation excludes them from mAP and Acc@K and
  reports how many there were (``queries_without_positive``).
- **Missing photo files.** The loader does not require photos on disk;
  :meth:`Street2Shop.missing_photos` lists absent ones, and stages skip them
  with the reason in their artifact.
"""
from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from ..errors import InputError, MissingFileError, UnknownNameError
from .categories import load_categories

logger = logging.getLogger(__name__)

PHOTO_NAME = "{photo_id:09d}.jpg"


@dataclass(frozen=True)
class StreetQuery:
    photo_id: int
    product_id: int
    category: str
    box_xyxy: Optional[Tuple[float, float, float, float]]  # pixels; None for a zero-size box
    record: int  # index of the record in its pair file: (split, category, record) identifies a query


@dataclass(frozen=True)
class ShopPhoto:
    photo_id: int
    product_id: int                 # the first product the category's retrieval file lists it for
    category: str
    product_ids: Tuple[int, ...] = ()  # every product listed for it in the category (product_id first)

    @property
    def products(self) -> Tuple[int, ...]:
        return self.product_ids or (self.product_id,)


@dataclass
class LoadReport:
    """What the loader found odd and what it did about it (counts)."""

    float_boxes: int = 0
    zero_size_boxes: int = 0
    repeated_boxes: int = 0             # extra boxes for an already seen (photo, product) in a pair file
    repeated_gallery_records: int = 0   # dropped
    multi_category_street_photos: int = 0
    queries_without_positive: Dict[str, int] = field(default_factory=dict)  # split -> count


@dataclass
class Street2Shop:
    root: Path
    categories: Tuple[str, ...]
    train_queries: List[StreetQuery]
    test_queries: List[StreetQuery]
    gallery: Dict[str, List[ShopPhoto]]
    report: LoadReport
    splits: Tuple[str, ...] = ("train", "test")  # the pair files that were read
    _positives: Dict[Tuple[str, int], Tuple[int, ...]] = field(default_factory=dict, repr=False)

    def photo_path(self, photo_id: int) -> Path:
        return self.root / "images" / PHOTO_NAME.format(photo_id=photo_id)

    def queries(self, split: str) -> List[StreetQuery]:
        if split not in ("train", "test"):
            raise InputError(f"split must be 'train' or 'test', got {split!r}")
        if split not in self.splits:
            raise InputError(f"the {split} pairs of {self.root} were not loaded (splits={self.splits})")
        return self.train_queries if split == "train" else self.test_queries

    def positives(self, query: StreetQuery) -> Tuple[int, ...]:
        """Gallery photo ids of the query's product within the query's category."""
        return self._positives.get((query.category, query.product_id), ())

    def missing_photos(self, photo_ids: Iterable[int]) -> List[int]:
        return sorted({pid for pid in photo_ids if not self.photo_path(pid).is_file()})

    def all_photo_ids(self) -> List[int]:
        ids = {q.photo_id for q in self.train_queries} | {q.photo_id for q in self.test_queries}
        ids |= {s.photo_id for rows in self.gallery.values() for s in rows}
        return sorted(ids)


def _read_list(path: Path) -> list:
    if not path.is_file():
        raise MissingFileError(f"{path}: Street2Shop file missing")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    return data


def _int_field(rec: dict, key: str, path: Path, i: int) -> int:
    value = rec.get(key) if isinstance(rec, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise InputError(f"{path}: record {i}: '{key}' must be an integer id, got {value!r} in {rec!r}")
    return int(value)


def _box(rec: dict, path: Path, i: int, report: LoadReport) -> Optional[Tuple[float, float, float, float]]:
    box = rec.get("bbox")
    keys = ("left", "top", "width", "height")
    if not isinstance(box, dict) or any(k not in box for k in keys):
        raise InputError(f"{path}: record {i}: 'bbox' must have {list(keys)}, got {box!r}")
    vals = []
    for k in keys:
        v = box[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:  # v != v: NaN
            raise InputError(f"{path}: record {i}: bbox '{k}' must be a number, got {v!r}")
        vals.append(float(v))
    if any(isinstance(box[k], float) for k in keys):
        report.float_boxes += 1
    left, top, width, height = vals
    if width <= 0 or height <= 0:
        report.zero_size_boxes += 1
        return None
    return (left, top, left + width, top + height)


def _load_pairs(path: Path, category: str, report: LoadReport) -> List[StreetQuery]:
    queries = []
    seen = set()
    for i, rec in enumerate(_read_list(path)):
        photo = _int_field(rec, "photo", path, i)
        product = _int_field(rec, "product", path, i)
        if (photo, product) in seen:
            report.repeated_boxes += 1
        seen.add((photo, product))
        queries.append(StreetQuery(photo, product, category, _box(rec, path, i, report), i))
    return queries


def load_street2shop(
    root: Path, categories: Optional[Sequence[str]] = None, splits: Sequence[str] = ("train", "test")
) -> Street2Shop:
    """Load the retrieval files and the pair files of `splits` for `categories` (default: all 11)."""
    root = Path(root)
    meta = root / "meta" / "json"
    if not meta.is_dir():
        raise MissingFileError(f"{meta}: no Street2Shop meta/json folder under {root}")
    known = load_categories().street2shop
    cats = tuple(categories) if categories is not None else known
    unknown = [c for c in cats if c not in known]
    if unknown:
        raise UnknownNameError(f"unknown Street2Shop categories {unknown}; known: {', '.join(known)}")
    report = LoadReport()
    gallery: Dict[str, List[ShopPhoto]] = {}
    positives: Dict[Tuple[str, int], List[int]] = defaultdict(list)
    for cat in cats:
        path = meta / f"retrieval_{cat}.json"
        products_of: Dict[int, List[int]] = {}  # photo -> its products, in file order (dicts keep it)
        for i, rec in enumerate(_read_list(path)):
            photo, product = _int_field(rec, "photo", path, i), _int_field(rec, "product", path, i)
            if product in products_of.get(photo, ()):
                report.repeated_gallery_records += 1
                continue
            products_of.setdefault(photo, []).append(product)
            positives[(cat, product)].append(photo)
        # one gallery row per photo, showing every product it is listed for
        gallery[cat] = [ShopPhoto(photo, prods[0], cat, tuple(prods)) for photo, prods in products_of.items()]
    bad_splits = [sp for sp in splits if sp not in ("train", "test")]
    if bad_splits:
        raise InputError(f"unknown splits {bad_splits}; Street2Shop has 'train' and 'test'")
    loaded = {"train": [], "test": []}
    for split in splits:
        queries = []
        for cat in cats:
            queries.extend(_load_pairs(meta / f"{split}_pairs_{cat}.json", cat, report))
        loaded[split] = queries
        report.queries_without_positive[split] = sum((q.category, q.product_id) not in positives for q in queries)
    street_cats: Dict[int, set] = defaultdict(set)
    for q in loaded["train"] + loaded["test"]:
        street_cats[q.photo_id].add(q.category)
    report.multi_category_street_photos = sum(len(v) > 1 for v in street_cats.values())
    logger.info("%s: %s", meta, ", ".join(f"{k} {v}" for k, v in vars(report).items()))
    return Street2Shop(root, cats, loaded["train"], loaded["test"], gallery, report, tuple(splits),
                       {k: tuple(v) for k, v in positives.items()})
