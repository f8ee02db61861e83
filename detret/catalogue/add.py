"""``catalogue add``: new photos cropped, embedded and added in one atomic change.

Each photo is cropped as ``detect --split shop`` crops the run's gallery (the catalogue's detector
and the paper's policy for the product's category), or by the box the CSV gives, and embedded as
``embed`` embeds gallery rows (``Describer``, side "gallery"). The work is proportional to the new
photos: a photo already present (same content, same product) is skipped before it is decoded, and
only the touched categories' indexes are rewritten. Unreadable photos are listed with their reason;
the others are added.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..data.images import PhotoError, read_rgb
from ..detect.crops import Crop, ground_truth_crop
from ..errors import InputError
from ..runs.atomic import atomic_path
from ..runs.manifest import sha256_file
from ..utils.progress import progress
from .binding import BoundModels
from .changes import NewPhoto, apply_change, begin_add
from .db import in_chunks
from .products_csv import ProductLine, read_products_csv
from .store import Catalogue

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


@dataclass
class AddReport:
    added: int = 0
    already_present: int = 0
    unreadable: List[Dict] = field(default_factory=list)   # {"line", "photo", "reason"}
    crop_rules: Dict[str, int] = field(default_factory=dict)
    change_id: Optional[int] = None

    def to_json(self) -> Dict:
        return {"added": self.added, "already_present": self.already_present, "unreadable": self.unreadable,
                "crop_rules": self.crop_rules, "change_id": self.change_id}


def add_products(root: Path, csv_path: Path, *, device="cpu", batch_size: int = 16,
                 holder: str = "detret catalogue add", models: Optional[BoundModels] = None) -> AddReport:
    """Add the photos of the product list ``csv_path`` to the catalogue ``root``."""
    with Catalogue.writing(root, holder) as cat:
        lines = read_products_csv(csv_path, list(cat.card.category_map))
        return add_lines(cat, lines, models or BoundModels(cat.card, root, device), batch_size=batch_size)


def _check_known_products(cat: Catalogue, lines: Sequence[ProductLine]) -> None:
    products = sorted({ln.product for ln in lines})
    known: Dict[str, str] = {}
    for chunk in in_chunks(products):
        marks = ",".join("?" * len(chunk))
        known.update({r[0]: r[1] for r in cat.conn.execute(
            f"SELECT product, category FROM products WHERE product IN ({marks})", chunk)})
    for ln in lines:
        if ln.product in known and known[ln.product] != ln.category:
            raise InputError(f"line {ln.line}: product {ln.product!r} is already in the catalogue as "
                             f"{known[ln.product]!r}, not {ln.category!r}")


def _new_lines(cat: Catalogue, lines: Sequence[ProductLine], report: AddReport) -> List[Tuple[ProductLine, str]]:
    """(line, photo sha256) of the photos not in the catalogue yet; missing files go to ``report``."""
    out, seen = [], set()
    for ln in lines:
        try:
            sha = sha256_file(ln.photo)
        except OSError as exc:
            report.unreadable.append({"line": ln.line, "photo": ln.source, "reason": f"cannot read ({exc.strerror})"})
            continue
        present = cat.conn.execute("SELECT 1 FROM photos WHERE sha256 = ? AND product = ?",
                                   (sha, ln.product)).fetchone()
        if present or (sha, ln.product) in seen:
            report.already_present += 1
            continue
        seen.add((sha, ln.product))
        out.append((ln, sha))
    return out


def _crops(models: BoundModels, batch: List[Tuple[ProductLine, str, np.ndarray]]) -> List[Optional[Crop]]:
    """The crop of each photo: its given box, else the paper's policy on the detector's output."""
    need = [i for i, (ln, _, _) in enumerate(batch) if ln.box_xyxy is None]
    detections = dict(zip(need, models.detect([batch[i][2] for i in need]))) if need else {}
    crops: List[Optional[Crop]] = []
    for i, (ln, _, rgb) in enumerate(batch):
        size_wh = (rgb.shape[1], rgb.shape[0])
        if ln.box_xyxy is None:
            crops.append(models.crop(detections[i], ln.category, size_wh))
            continue
        crop = ground_truth_crop(ln.box_xyxy, size_wh)
        crops.append(Crop(crop.box_xyxy, "given box", None) if crop.rule == "ground_truth" else None)
    return crops


def store_photo(cat: Catalogue, source: Path, sha: str) -> str:
    """Copy the photo into the catalogue (once per content); its path relative to the catalogue."""
    suffix = source.suffix.lower() if source.suffix.lower() in PHOTO_SUFFIXES else ".img"
    relative = cat.layout.photo_file(sha, suffix)
    if not (cat.root / relative).is_file():
        with atomic_path(cat.root / relative) as tmp:
            shutil.copyfile(source, tmp)
    return relative


def _embed_batch(cat: Catalogue, models: BoundModels, batch: List[Tuple[ProductLine, str, np.ndarray]],
                 report: AddReport) -> Tuple[List[NewPhoto], Optional[np.ndarray]]:
    crops = _crops(models, batch)
    keep = [i for i, c in enumerate(crops) if c is not None]
    for i in (i for i, c in enumerate(crops) if c is None):
        ln = batch[i][0]
        report.unreadable.append({"line": ln.line, "photo": ln.source,
                                  "reason": f"box {list(ln.box_xyxy)} lies outside the photo"})
    if not keep:
        return [], None
    desc = models.describe([batch[i][2] for i in keep], [crops[i].box_xyxy for i in keep], "gallery")
    photos = []
    for i in keep:
        ln, sha, rgb = batch[i]
        photos.append(NewPhoto(ln.product, ln.category, sha, store_photo(cat, ln.photo, sha), ln.source,
                               rgb.shape[1], rgb.shape[0], crops[i].box_xyxy, crops[i].rule, ln.title, ln.url))
        report.crop_rules[crops[i].rule] = report.crop_rules.get(crops[i].rule, 0) + 1
    return photos, desc


def add_lines(cat: Catalogue, lines: Sequence[ProductLine], models: BoundModels, *, batch_size: int = 16
              ) -> AddReport:
    """Crop, embed and add the lines' new photos as one change (the caller holds the writer's lock)."""
    report = AddReport()
    _check_known_products(cat, lines)
    todo = _new_lines(cat, lines, report)
    photos: List[NewPhoto] = []
    parts: List[np.ndarray] = []
    for start in progress(range(0, len(todo), batch_size), "embedding new photos", unit="batch"):
        batch = []
        for ln, sha in todo[start:start + batch_size]:
            try:
                batch.append((ln, sha, read_rgb(ln.photo)))
            except PhotoError as exc:
                report.unreadable.append({"line": ln.line, "photo": ln.source, "reason": exc.reason})
        new, desc = _embed_batch(cat, models, batch, report) if batch else ([], None)
        photos += new
        if desc is not None:
            parts.append(desc)
    if photos:
        report.change_id = begin_add(cat.applier, photos, np.concatenate(parts))
        apply_change(cat.applier, report.change_id)
    report.added = len(photos)
    report.unreadable.sort(key=lambda u: u["line"])
    return report
