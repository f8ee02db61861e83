"""DeepFashion2 (Ge et al., CVPR 2019) per-image annotations, for consumer-to-shop retrieval.

Layout: ``root/<split>/annos/<id, 6 digits>.json`` and ``root/<split>/image/<id>.jpg``
with split ``train``, ``validation`` (or ``test`` where annotations exist). Each
annotation file holds ``source`` ("user" or "shop"), ``pair_id`` and items
``item1``, ``item2``, ... with ``category_id`` 1..13, ``style``,
``bounding_box`` [x1, y1, x2, y2], ``occlusion``, ``scale``, ``zoom_in``,
``viewpoint`` (and landmarks and segmentation, not read here).

Matching rule (the dataset's own): a consumer item and a shop item match when
they have the same ``pair_id`` and the same ``style`` > 0. ``style`` 0 means the
item cannot form a pair: it never matches. Retrieval runs in both directions:

- consumer-to-shop: queries are consumer items with ``style`` > 0; the gallery
  is every shop item of the split (style 0 items included, as distractors);
- shop-to-consumer: the same with the roles swapped.

A query whose counterpart is absent from the split has no positive and is
reported, not scored (as for Street2Shop).
"""
from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Tuple

from ..errors import InputError, MissingFileError
from .categories import load_categories

_ITEM_KEY = re.compile(r"^item(\d+)$")
_DOMAINS = {"user": "consumer", "shop": "shop"}


@dataclass(frozen=True)
class DF2Item:
    image_id: str            # file stem, e.g. "000001"
    item: int                # n of "item<n>"
    domain: str              # "consumer" or "shop"
    pair_id: int
    style: int
    category_id: int         # 1..13
    category: str
    box_xyxy: Tuple[float, float, float, float]
    occlusion: int
    scale: int
    zoom_in: int
    viewpoint: int

    @property
    def key(self) -> Tuple[str, int]:
        return (self.image_id, self.item)


@dataclass
class DeepFashion2:
    root: Path
    split: str
    items: List[DF2Item]
    _by_match: Dict[Tuple[str, int, int], List[DF2Item]] = field(default_factory=dict, repr=False)

    def image_path(self, image_id: str) -> Path:
        return self.root / self.split / "image" / f"{image_id}.jpg"

    def gallery(self, direction: str) -> List[DF2Item]:
        """Items searched: shop items for consumer-to-shop, consumer items for shop-to-consumer."""
        return [it for it in self.items if it.domain == _target_domain(direction)]

    def queries(self, direction: str) -> List[DF2Item]:
        """Items that can have a match: style > 0, in the query domain."""
        source = "consumer" if _target_domain(direction) == "shop" else "shop"
        return [it for it in self.items if it.domain == source and it.style > 0]

    def positives(self, query: DF2Item) -> List[DF2Item]:
        if query.style <= 0:
            return []
        other = "shop" if query.domain == "consumer" else "consumer"
        return list(self._by_match.get((other, query.pair_id, query.style), []))


def matches(a: DF2Item, b: DF2Item) -> bool:
    """The DeepFashion2 rule: other domain, same pair_id, same style > 0."""
    return a.domain != b.domain and a.pair_id == b.pair_id and a.style == b.style and a.style > 0


def _target_domain(direction: str) -> str:
    if direction == "consumer2shop":
        return "shop"
    if direction == "shop2consumer":
        return "consumer"
    raise InputError(f"direction must be 'consumer2shop' or 'shop2consumer', got {direction!r}")


def _number(value, path: Path, where: str, integer: bool = True):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and int(value) != value):
        kind = "an integer" if integer else "a number"
        raise InputError(f"{path}: {where} must be {kind}, got {value!r}")
    return int(value) if integer else float(value)


def parse_annotation(path: Path, categories: Tuple[str, ...]) -> List[DF2Item]:
    """The items of one per-image annotation file; a malformed file is a ValueError naming it."""
    try:
        doc = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise InputError(f"{path}: expected a JSON object")
    source = doc.get("source")
    if not isinstance(source, str) or source not in _DOMAINS:
        raise InputError(f"{path}: 'source' must be 'user' or 'shop', got {source!r}")
    pair_id = _number(doc.get("pair_id"), path, "'pair_id'")
    items = []
    for key in sorted((k for k in doc if _ITEM_KEY.match(k)), key=lambda k: int(_ITEM_KEY.match(k).group(1))):
        rec = doc[key]
        if not isinstance(rec, dict):
            raise InputError(f"{path}: '{key}' must be an object")
        cat_id = _number(rec.get("category_id"), path, f"{key}.category_id")
        if not 1 <= cat_id <= len(categories):
            raise InputError(f"{path}: {key}.category_id {cat_id} is not in 1..{len(categories)}")
        box = rec.get("bounding_box")
        if not isinstance(box, list) or len(box) != 4:
            raise InputError(f"{path}: {key}.bounding_box must be [x1, y1, x2, y2], got {box!r}")
        x1, y1, x2, y2 = (_number(v, path, f"{key}.bounding_box", integer=False) for v in box)
        if x2 <= x1 or y2 <= y1:
            raise InputError(f"{path}: {key}.bounding_box {box} has no area")
        items.append(DF2Item(
            image_id=Path(path).stem, item=int(_ITEM_KEY.match(key).group(1)), domain=_DOMAINS[source],
            pair_id=pair_id, style=_number(rec.get("style", 0), path, f"{key}.style"), category_id=cat_id,
            category=categories[cat_id - 1], box_xyxy=(x1, y1, x2, y2),
            occlusion=_number(rec.get("occlusion", 0), path, f"{key}.occlusion"),
            scale=_number(rec.get("scale", 0), path, f"{key}.scale"),
            zoom_in=_number(rec.get("zoom_in", 0), path, f"{key}.zoom_in"),
            viewpoint=_number(rec.get("viewpoint", 0), path, f"{key}.viewpoint"),
        ))
    return items


def load_deepfashion2(root: Path, split: str) -> DeepFashion2:
    """Every item of ``root/<split>/annos/*.json``, with the matching index built."""
    root = Path(root)
    annos = root / split / "annos"
    if not annos.is_dir():
        raise MissingFileError(f"{annos}: no DeepFashion2 annotation folder (expected <root>/<split>/annos/)")
    categories = load_categories().deepfashion2
    items: List[DF2Item] = []
    for path in sorted(annos.glob("*.json")):
        items.extend(parse_annotation(path, categories))
    by_match: Dict[Tuple[str, int, int], List[DF2Item]] = defaultdict(list)
    for it in items:
        if it.style > 0:
            by_match[(it.domain, it.pair_id, it.style)].append(it)
    return DeepFashion2(root, split, items, dict(by_match))
