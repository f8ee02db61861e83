"""`detret data check`: validate a dataset on disk and summarise it per category.

Each checker loads the annotations with the dataset's loader, looks at every
photo the annotations name (decoding it fully with ``decode=True``, or reading
only its header), and returns a plain dict (JSON-ready)::

    {"dataset": ..., "root": ..., "ok": bool,
     "categories": {name: {counts...}},   # per category, the columns of the table
     "totals": {counts...},
     "photos": {"checked": n, "missing": n, "undecodable": n},
     "problems": ["...", ...]}            # first MAX_LISTED problems, each naming a file

``ok`` is False when a photo is missing or undecodable, a box lies outside its
photo, or a category is empty: things a user should know before training on it.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

from ..errors import InputError
from ..utils.progress import progress
from .images import PhotoError, photo_size, read_rgb

MAX_LISTED = 50
_OUTSIDE_TOLERANCE_PX = 1.0


def inspect_photos(paths: Dict[int, Path], *, decode: bool, workers: int) -> Dict[int, Tuple[str, object]]:
    """photo key -> ("ok", (width, height)) or ("missing" | "undecodable", reason)."""

    def one(item):
        key, path = item
        try:
            if decode:
                h, w = read_rgb(path).shape[:2]
                return key, ("ok", (w, h))
            return key, ("ok", photo_size(path))
        except PhotoError as exc:
            return key, ("missing" if exc.reason == "missing file" else "undecodable", exc.reason)

    items = sorted(paths.items())
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return dict(progress(pool.map(one, items), "checking photos", total=len(items)))


def _outside(box, size) -> bool:
    x0, y0, x1, y1 = box
    w, h = size
    t = _OUTSIDE_TOLERANCE_PX
    return x0 < -t or y0 < -t or x1 > w + t or y1 > h + t


def _photo_counts(status: Dict, keys: Iterable) -> Tuple[int, int]:
    states = Counter(status[k][0] for k in set(keys))
    return states["missing"], states["undecodable"]


def _finish(result: Dict, status: Dict, names: Dict, problems: List[str]) -> Dict:
    bad = [(k, s) for k, s in sorted(status.items()) if s[0] != "ok"]
    for key, (_, reason) in bad:
        problems.append(f"{names[key]}: {reason}")
    states = Counter(s[0] for s in status.values())
    result["photos"] = {"checked": len(status), "missing": states["missing"], "undecodable": states["undecodable"]}
    result["ok"] = not problems
    result["n_problems"] = len(problems)
    result["problems"] = problems[:MAX_LISTED]
    return result


def check_street2shop(root: Path, *, decode: bool = True, workers: int = 4) -> Dict:
    from .street2shop import load_street2shop

    data = load_street2shop(root)
    paths = {pid: data.photo_path(pid) for pid in data.all_photo_ids()}
    status = inspect_photos(paths, decode=decode, workers=workers)
    problems: List[str] = []
    cats = {}
    for cat in data.categories:
        queries = {s: [q for q in data.queries(s) if q.category == cat] for s in ("train", "test")}
        all_q = queries["train"] + queries["test"]
        outside = [q for q in all_q if q.box_xyxy and status[q.photo_id][0] == "ok"
                   and _outside(q.box_xyxy, status[q.photo_id][1])]
        for q in outside[:5]:
            problems.append(f"{data.photo_path(q.photo_id)}: {cat} box {q.box_xyxy} lies outside the "
                            f"{status[q.photo_id][1][0]}x{status[q.photo_id][1][1]} photo")
        gallery_ids = [s.photo_id for s in data.gallery[cat]]
        g_missing, g_bad = _photo_counts(status, gallery_ids)
        q_missing, q_bad = _photo_counts(status, [q.photo_id for q in all_q])
        row = {
            "gallery_photos": len(gallery_ids), "train_queries": len(queries["train"]),
            "test_queries": len(queries["test"]),
            "zero_size_boxes": sum(q.box_xyxy is None for q in all_q), "boxes_outside_photo": len(outside),
            "test_queries_without_positive": sum(not data.positives(q) for q in queries["test"]),
            "missing_photos": g_missing + q_missing, "undecodable_photos": g_bad + q_bad,
        }
        if not gallery_ids:
            problems.append(f"{root}: category {cat} has no gallery photo (retrieval_{cat}.json is empty)")
        if not queries["test"]:
            problems.append(f"{root}: category {cat} has no test query (test_pairs_{cat}.json is empty)")
        cats[cat] = row
    totals = {k: sum(r[k] for r in cats.values()) for k in next(iter(cats.values()))} if cats else {}
    result = {"dataset": "street2shop", "root": str(root), "categories": cats, "totals": totals,
              "loader_report": {k: v for k, v in vars(data.report).items()}}
    return _finish(result, status, {k: str(p) for k, p in paths.items()}, problems)


def check_modanet(json_path: Path, image_root: Path, *, decode: bool = True, workers: int = 4) -> Dict:
    from .categories import load_categories
    from .modanet import load_modanet

    dicts, report = load_modanet(json_path, image_root)
    labels = load_categories().modanet
    paths = {d["image_id"]: Path(d["file_name"]) for d in dicts}
    status = inspect_photos(paths, decode=decode, workers=workers)
    problems: List[str] = []
    for d in dicts:
        st = status[d["image_id"]]
        if st[0] == "ok" and tuple(st[1]) != (d["width"], d["height"]):
            problems.append(f"{d['file_name']}: photo is {st[1][0]}x{st[1][1]} but the annotations say "
                            f"{d['width']}x{d['height']}")
    per_cat = defaultdict(lambda: {"annotations": 0, "images": 0})
    for d in dicts:
        seen = set()
        for a in d["annotations"]:
            name = labels[a["category_id"]]
            per_cat[name]["annotations"] += 1
            if name not in seen:
                per_cat[name]["images"] += 1
                seen.add(name)
    cats = {name: dict(per_cat[name]) if name in per_cat else {"annotations": 0, "images": 0} for name in labels}
    if report.annotations:
        for name, row in cats.items():
            if row["annotations"] == 0:
                problems.append(f"{json_path}: category {name} has no annotation")
    totals = {"images": report.images, "annotations": report.annotations}
    result = {"dataset": "modanet", "root": str(image_root), "annotations_file": str(json_path),
              "categories": cats, "totals": totals, "loader_report": vars(report)}
    return _finish(result, status, {k: str(p) for k, p in paths.items()}, problems)


def check_deepfashion2(root: Path, split: str, *, decode: bool = True, workers: int = 4) -> Dict:
    from .deepfashion2 import load_deepfashion2

    data = load_deepfashion2(root, split)
    image_ids = sorted({it.image_id for it in data.items})
    paths = {i: data.image_path(i) for i in image_ids}
    status = inspect_photos(paths, decode=decode, workers=workers)
    problems: List[str] = []
    cats: Dict[str, Dict[str, int]] = {}
    for it in data.items:
        row = cats.setdefault(it.category, {"consumer_items": 0, "shop_items": 0, "boxes_outside_photo": 0,
                                            "consumer_queries_without_positive": 0})
        row[f"{it.domain}_items"] += 1
        st = status[it.image_id]
        if st[0] == "ok" and _outside(it.box_xyxy, st[1]):
            row["boxes_outside_photo"] += 1
            problems.append(f"{paths[it.image_id]}: item{it.item} box {it.box_xyxy} lies outside the photo")
        if it.domain == "consumer" and it.style > 0 and not data.positives(it):
            row["consumer_queries_without_positive"] += 1
    totals = {k: sum(r[k] for r in cats.values()) for k in next(iter(cats.values()))} if cats else {}
    result = {"dataset": "deepfashion2", "root": str(root), "split": split, "categories": cats, "totals": totals}
    return _finish(result, status, {k: str(p) for k, p in paths.items()}, problems)


def check_dataset(dataset: str, root: Path, *, split: Optional[str] = None, annotations: Optional[Path] = None,
                  decode: bool = True, workers: int = 4) -> Dict:
    """Dispatch on the dataset name, with each dataset's standard layout under `root`."""
    root = Path(root)
    if dataset == "street2shop":
        return check_street2shop(root, decode=decode, workers=workers)
    if dataset == "modanet":
        json_path = annotations or root / "annotations" / "modanet2018_instances_train.json"
        return check_modanet(json_path, root / "images", decode=decode, workers=workers)
    if dataset == "deepfashion2":
        return check_deepfashion2(root, split or "validation", decode=decode, workers=workers)
    raise InputError(f"unknown dataset {dataset!r}; known: modanet, street2shop, deepfashion2")
