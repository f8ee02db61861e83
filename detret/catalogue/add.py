"""``catalogue add``: new photos cropped, embedded and added in one atomic change.

Each photo is cropped as ``detect --split shop`` crops the run's gallery (the catalogue's detector
and the paper's policy for the product's category), or by the box the CSV gives, and embedded as
``embed`` embeds gallery rows (``compute.py``). The work is proportional to the new
photos: a photo already present (same content, same product) is skipped before it is decoded, and
only the touched categories' indexes are rewritten. Unreadable photos are listed with their reason;
the others are added.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple


from ..errors import InputError
from ..runs.atomic import atomic_path
from ..runs.manifest import sha256_file
from ..utils.device import DataParallel
from .binding import BoundModels
from .changes import NewPhoto, apply_change, begin_add
from .compute import compute_all
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
                 holder: str = "detret catalogue add", parallel: Optional[DataParallel] = None) -> AddReport:
    """Add the photos of the product list ``csv_path`` to the catalogue ``root`` (data-parallel with
    ``parallel``: one process per GPU, or gloo processes on CPUs)."""
    with Catalogue.writing(root, holder) as cat:
        lines = read_products_csv(csv_path, list(cat.card.category_map))
        return add_lines(cat, lines, device=device, batch_size=batch_size, parallel=parallel)


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


def store_photo(cat: Catalogue, source: Path, sha: str) -> str:
    """Copy the photo into the catalogue (once per content); its path relative to the catalogue."""
    suffix = source.suffix.lower() if source.suffix.lower() in PHOTO_SUFFIXES else ".img"
    relative = cat.layout.photo_file(sha, suffix)
    if not (cat.root / relative).is_file():
        with atomic_path(cat.root / relative) as tmp:
            shutil.copyfile(source, tmp)
    return relative


def add_lines(cat: Catalogue, lines: Sequence[ProductLine], models: Optional[BoundModels] = None, *,
              device="cpu", batch_size: int = 16, parallel: Optional[DataParallel] = None) -> AddReport:
    """Crop, embed and add the lines' new photos as one change (the caller holds the writer's lock).
    ``models``: the catalogue's, already loaded (the service); else loaded on ``device`` when needed."""
    report = AddReport()
    _check_known_products(cat, lines)
    todo = _new_lines(cat, lines, report)
    items = [(str(ln.photo), ln.category, ln.box_xyxy) for ln, _ in todo]
    computed, descriptors, staging = compute_all(cat.root, items, models=models, device=device,
                                                 batch_size=batch_size, parallel=parallel)
    photos: List[NewPhoto] = []
    for (ln, sha), c in zip(todo, computed):
        if c.reason is not None:
            report.unreadable.append({"line": ln.line, "photo": ln.source, "reason": c.reason})
            continue
        photos.append(NewPhoto(ln.product, ln.category, sha, store_photo(cat, ln.photo, sha), ln.source, c.width,
                               c.height, c.box_xyxy, c.rule, ln.title, ln.url))
        report.crop_rules[c.rule] = report.crop_rules.get(c.rule, 0) + 1
    if photos:
        report.change_id = begin_add(cat.applier, photos, descriptors)
        apply_change(cat.applier, report.change_id)
    shutil.rmtree(staging, ignore_errors=True)
    report.added = len(photos)
    report.unreadable.sort(key=lambda u: u["line"])
    return report
