"""ModaNet (Zheng et al. 2018) COCO instances into Detectron2 dataset dicts.

Reading is Detectron2's own ``load_coco_json`` (polygons with fewer than three
points are dropped there); this module adds what ModaNet needs on top:

- category ids 1..13 become detector classes 0..12 in ModaNet's published order
  (``detret/resources/categories.yaml``); a file whose categories differ is refused;
- boxes are turned into ``XYXY_ABS`` and clipped to the image (about 230 of the
  official boxes run past the border); boxes left with no area are dropped;
- ``box_source="polygon"`` takes each box from the extent of its polygons
  instead, since about a quarter of ModaNet's boxes disagree with their own
  polygons by more than 5 pixels;
- what was fixed is counted in :class:`ModaNetReport` and logged.

The official val file has no annotations, so the paper holds out 5% of train:
:func:`load_or_create_split` draws that split once from a seed and saves the
id lists (JSON) so that every later run reuses the same images.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import InputError, MissingFileError
from ..runs.atomic import atomic_write_json
from ..runs.manifest import sha256_file
from .categories import load_categories

logger = logging.getLogger(__name__)

SPLIT_FORMAT = "detret.modanet_split/1"
DISAGREEMENT_PX = 5.0


@dataclass
class ModaNetReport:
    images: int = 0
    images_without_annotations: int = 0
    annotations: int = 0                 # kept
    boxes_clipped: int = 0
    boxes_dropped_degenerate: int = 0
    boxes_from_polygons: int = 0
    boxes_disagreeing_with_polygons: int = 0  # by more than DISAGREEMENT_PX on some side
    annotations_without_image: int = 0        # image_id names no image of the file: ignored


def _polygon_extent(segmentation: Sequence[Sequence[float]]) -> Optional[Tuple[float, float, float, float]]:
    pts = [np.asarray(p, np.float64).reshape(-1, 2) for p in segmentation if len(p) >= 6]
    if not pts:
        return None
    allp = np.concatenate(pts)
    return float(allp[:, 0].min()), float(allp[:, 1].min()), float(allp[:, 0].max()), float(allp[:, 1].max())


def _check_file(json_path: Path, labels: Tuple[str, ...]) -> int:
    """Validate what Detectron2's reader assumes; returns the count of annotations without an image."""
    try:
        doc = json.loads(Path(json_path).read_text())
        cats = doc.get("categories")
    except (json.JSONDecodeError, AttributeError) as exc:
        raise InputError(f"{json_path}: not a COCO instances JSON object ({exc})") from exc
    images, anns = doc.get("images"), doc.get("annotations", [])
    if not isinstance(images, list) or not isinstance(anns, list):
        raise InputError(f"{json_path}: 'images' and 'annotations' must be lists")
    image_ids = set()
    for i, im in enumerate(images):
        if not isinstance(im, dict) or not all(k in im for k in ("id", "file_name", "width", "height")):
            raise InputError(f"{json_path}: images[{i}] must have id, file_name, width, height; got {im!r}")
        if not all(_is_int(im[k]) for k in ("id", "width", "height")) or not isinstance(im["file_name"], str):
            raise InputError(f"{json_path}: images[{i}]: id, width, height must be integers and file_name a "
                             f"string; got {im!r}")
        image_ids.add(im["id"])
    orphans = 0
    for i, ann in enumerate(anns):
        if not isinstance(ann, dict):
            raise InputError(f"{json_path}: annotations[{i}] must be an object, got {ann!r}")
        if not _is_int(ann.get("image_id")):
            raise InputError(f"{json_path}: annotations[{i}] (id {ann.get('id')}): image_id must be an integer, "
                             f"got {ann.get('image_id')!r}")
        segm = ann.get("segmentation", [])
        if not isinstance(segm, list) or not all(
                isinstance(p, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in p)
                for p in segm):
            raise InputError(f"{json_path}: annotations[{i}] (id {ann.get('id')}): segmentation must be a list of "
                             f"polygons [x0, y0, x1, y1, ...], got {segm!r}"[:300])
        box = ann.get("bbox")
        if not (isinstance(box, list) and len(box) == 4
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box)):
            raise InputError(f"{json_path}: annotations[{i}] (id {ann.get('id')}): "
                             f"'bbox' must be [x, y, w, h] numbers, got {box!r}")
        if not isinstance(ann.get("category_id"), int) or not 1 <= ann["category_id"] <= len(labels):
            raise InputError(f"{json_path}: annotations[{i}] (id {ann.get('id')}): category_id "
                             f"{ann.get('category_id')!r} is not in 1..{len(labels)}")
        orphans += ann.get("image_id") not in image_ids
    _check_categories(json_path, cats, labels)
    return orphans


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_categories(json_path: Path, cats, labels: Tuple[str, ...]) -> None:
    if not isinstance(cats, list):
        raise InputError(f"{json_path}: no 'categories' list")
    try:
        by_id = {int(c["id"]): str(c["name"]) for c in cats}
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{json_path}: a category lacks an integer 'id' or a 'name' ({exc})") from exc
    expected = {i + 1: name for i, name in enumerate(labels)}
    if by_id != expected:
        raise InputError(f"{json_path}: categories {by_id} are not ModaNet's {expected}")


def load_modanet(
    json_path: Path,
    image_root: Path,
    *,
    box_source: str = "annotation",
    image_ids: Optional[Sequence[int]] = None,
) -> Tuple[List[Dict], ModaNetReport]:
    """ModaNet records as Detectron2 dataset dicts, plus a report of what was fixed.

    Each dict: ``file_name``, ``image_id``, ``height``, ``width``, ``annotations``
    (``bbox`` [x0, y0, x1, y1] pixels with ``bbox_mode`` XYXY_ABS, ``segmentation``
    polygons, ``category_id`` 0..12, ``iscrowd``). `image_ids` keeps only those images.
    """
    from detectron2.data.datasets import load_coco_json
    from detectron2.structures import BoxMode

    if box_source not in ("annotation", "polygon"):
        raise InputError(f"box_source must be 'annotation' or 'polygon', got {box_source!r}")
    json_path, image_root = Path(json_path), Path(image_root)
    if not json_path.is_file():
        raise MissingFileError(f"{json_path}: ModaNet annotation file not found")
    labels = load_categories().modanet
    orphans = _check_file(json_path, labels)
    try:
        records = load_coco_json(str(json_path), str(image_root), dataset_name=None)
    except (AssertionError, KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{json_path}: not a valid COCO instances file: {exc!r}") from exc
    keep = None if image_ids is None else set(int(i) for i in image_ids)
    report = ModaNetReport(annotations_without_image=orphans)
    out = []
    for rec in records:
        if keep is not None and rec["image_id"] not in keep:
            continue
        w, h = float(rec["width"]), float(rec["height"])
        anns = []
        for ann in rec.get("annotations", []):
            x, y, bw, bh = (float(v) for v in ann["bbox"])
            box = (x, y, x + bw, y + bh)
            extent = _polygon_extent(ann.get("segmentation", []))
            if extent is not None and max(abs(a - b) for a, b in zip(box, extent)) > DISAGREEMENT_PX:
                report.boxes_disagreeing_with_polygons += 1
            if box_source == "polygon" and extent is not None:
                box = extent
                report.boxes_from_polygons += 1
            clipped = (min(max(box[0], 0.0), w), min(max(box[1], 0.0), h),
                       min(max(box[2], 0.0), w), min(max(box[3], 0.0), h))
            if clipped != box:
                report.boxes_clipped += 1
            if clipped[2] - clipped[0] < 1.0 or clipped[3] - clipped[1] < 1.0:
                report.boxes_dropped_degenerate += 1
                continue
            cat = int(ann["category_id"])
            anns.append({"bbox": list(clipped), "bbox_mode": BoxMode.XYXY_ABS,
                         "segmentation": ann.get("segmentation", []), "category_id": cat - 1,
                         "iscrowd": int(ann.get("iscrowd", 0))})
        report.images += 1
        report.annotations += len(anns)
        report.images_without_annotations += not anns
        out.append({"file_name": rec["file_name"], "image_id": rec["image_id"], "height": rec["height"],
                    "width": rec["width"], "annotations": anns})
    logger.info("%s: %s", json_path, ", ".join(f"{k} {v}" for k, v in asdict(report).items()))
    return out, report


def holdout_split(image_ids: Sequence[int], fraction: float, seed: int) -> Tuple[List[int], List[int]]:
    """(train ids, holdout ids): a seeded random `fraction` of the ids held out (at least one)."""
    if not 0.0 < fraction < 1.0:
        raise InputError(f"holdout fraction must lie strictly between 0 and 1, got {fraction}")
    ids = np.array(sorted(set(int(i) for i in image_ids)), dtype=np.int64)
    if len(ids) < 2:
        raise InputError(f"cannot hold out images from {len(ids)} image(s)")
    order = np.random.default_rng(seed).permutation(len(ids))
    n_holdout = min(len(ids) - 1, max(1, int(round(fraction * len(ids)))))
    holdout = sorted(ids[order[:n_holdout]].tolist())
    train = sorted(ids[order[n_holdout:]].tolist())
    return train, holdout


def load_or_create_split(split_path: Path, json_path: Path, fraction: float, seed: int) -> Dict[str, List[int]]:
    """The saved train/holdout id lists for this annotation file, made once and reused.

    The file records the fraction, seed and annotation file hash it was drawn
    for; asking for another fraction or seed, or pointing at a changed
    annotation file, is an error rather than a silent redraw.
    """
    split_path, json_path = Path(split_path), Path(json_path)
    source_sha = sha256_file(json_path)
    if split_path.is_file():
        saved = json.loads(split_path.read_text())
        if saved.get("format") != SPLIT_FORMAT:
            raise InputError(f"{split_path}: not a detret ModaNet split file")
        if (saved["fraction"], saved["seed"]) != (fraction, seed) or saved["source_sha256"] != source_sha:
            raise InputError(
                f"{split_path} was drawn with fraction {saved['fraction']}, seed {saved['seed']} from an annotation "
                f"file with sha256 {saved['source_sha256'][:12]}; now fraction {fraction}, seed {seed}, "
                f"{json_path} sha256 {source_sha[:12]}. Delete it to draw a new split, or use another run directory"
            )
        return {"train": saved["train"], "holdout": saved["holdout"]}
    doc = json.loads(json_path.read_text())
    train, holdout = holdout_split([img["id"] for img in doc["images"]], fraction, seed)
    atomic_write_json(split_path, {"format": SPLIT_FORMAT, "source": str(json_path), "source_sha256": source_sha,
                                   "fraction": fraction, "seed": seed, "train": train, "holdout": holdout})
    logger.info("%s: held out %d of %d images (seed %d)", split_path, len(holdout), len(train) + len(holdout), seed)
    return {"train": train, "holdout": holdout}
