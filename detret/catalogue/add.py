"""``catalogue add``: new photos cropped, embedded and added in one atomic change.

Each photo is cropped as ``detect --split shop`` crops the run's gallery (the catalogue's detector
and the paper's policy for the product's category), or by the box the CSV gives, and embedded as
``embed`` embeds gallery rows (``compute.py``). The work is proportional to the new
photos: a photo already present (same content, same product) is skipped before it is decoded, one
the catalogue holds for another product (same content, category and given box) reuses its vector,
and only the touched categories' indexes are rewritten. Unreadable photos are listed with their reason;
the others are added.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..config.choices import EngineChoice
from ..data.boxes import BoxXYXY
from ..detect.crops import GIVEN_BOX
from ..errors import InputError
from ..runs.atomic import atomic_path
from ..runs.manifest import sha256_file
from ..utils.device import DataParallel
from . import db
from .binding import BoundModels
from .changes import NewPhoto, begin_add, finish_add_or_roll_back, free_unused_files
from .compact import maintain
from .compute import Computed, compute_all
from .duplicates import DUPLICATE_POLICIES, NewEntry, find_duplicates
from .folder_import import PHOTO_SUFFIXES, detector_namer, read_photo_folder
from .products_csv import ProductLine, read_products_csv
from .store import Catalogue
from .vectors import load_category, vector_in


@dataclass
class AddReport:
    added: int = 0
    already_present: int = 0
    unreadable: List[Dict] = field(default_factory=list)   # {"line", "photo", "reason"}
    crop_rules: Dict[str, int] = field(default_factory=dict)
    change_id: Optional[int] = None
    reused_descriptors: int = 0    # photos the catalogue had already embedded (listed for another product)
    maintenance: List[Dict] = field(default_factory=list)   # merges after the change (compact.maintain)
    duplicates: List[Dict] = field(default_factory=list)    # {"line", "photo", "product", "kind", "of", ...}

    def to_json(self) -> Dict:
        return {"added": self.added, "already_present": self.already_present, "unreadable": self.unreadable,
                "crop_rules": self.crop_rules, "change_id": self.change_id,
                "reused_descriptors": self.reused_descriptors, "maintenance": self.maintenance,
                "duplicates": self.duplicates}


def add_products(root: Path, csv_path: Path, *, device="cpu", batch_size: int = 16,
                 holder: str = "detret catalogue add", parallel: Optional[DataParallel] = None,
                 duplicates: str = "keep", engine: Optional[EngineChoice] = None) -> AddReport:
    """Add the photos of the product list ``csv_path`` (a CSV file, or a folder of photos: ``folder_import.py``)
    to the catalogue ``root`` (data-parallel with ``parallel``: one process per GPU, or gloo processes on CPUs;
    ``engine``: what runs the models, default as the catalogue was built)."""
    if engine is not None and parallel is not None and parallel.world > 1:
        raise InputError(f"the {engine.engine} engine adds in one process; drop --num-gpus/--num-machines")
    with Catalogue.writing(root, holder) as cat:
        categories = list(cat.card.category_map)
        if not Path(csv_path).is_dir():
            lines = read_products_csv(csv_path, categories)
            models = BoundModels(cat.card, cat.root, device, engine) if engine is not None else None
            return add_lines(cat, lines, models, device=device, batch_size=batch_size, parallel=parallel,
                             duplicates=duplicates)
        models = BoundModels(cat.card, cat.root, device, engine)   # (its detections of a flat folder are remembered)
        namer = detector_namer(models, categories) if cat.card.detector is not None else None
        lines, left_out = read_photo_folder(csv_path, categories, namer)
        report = add_lines(cat, lines, models, batch_size=batch_size, parallel=parallel, duplicates=duplicates)
        report.unreadable = sorted(report.unreadable + left_out, key=lambda u: u["line"])
        return report


def _check_known_products(cat: Catalogue, lines: Sequence[ProductLine]) -> None:
    known = db.product_categories(cat.conn, sorted({ln.product for ln in lines}))
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
        if db.has_photo(cat.conn, sha, ln.product) or (sha, ln.product) in seen:
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


CropKey = Tuple[str, str, Optional[Tuple[float, ...]]]


def _crop_key(sha: str, category: str, box) -> CropKey:
    """What decides a photo's descriptor in a catalogue: its content, its category (the crop policy's
    labels) and the box it was given, if any."""
    return (sha, category, None if box is None else tuple(round(float(v), 2) for v in box))


def _known_descriptors(cat: Catalogue, wanted: Sequence[CropKey]) -> Dict[CropKey, Tuple[Computed, np.ndarray]]:
    """The crops and vectors the catalogue already holds for any of ``wanted`` (a photo listed for another
    product), read back from the indexes: an unchanged photo is never embedded twice."""
    wanted_set, found = set(wanted), {}
    for r in db.present_with_content(cat.conn, [k[0] for k in wanted_set]):
        key = _crop_key(r["sha256"], r["category"], db.box_of(r) if r["rule"] == GIVEN_BOX else None)
        if key in wanted_set and key not in found:
            found[key] = r
    stored = _stored_vectors(cat, found.values())
    out = {}
    for k, r in found.items():
        vector = stored(r["category"], int(r["photo_id"]))
        if vector is None:  # the vector was lost (`catalogue check` says so): computed again instead
            continue
        out[k] = (Computed(None, db.box_of(r), r["rule"], r["width"], r["height"]), vector)
    return out


def _stored_vectors(cat: Catalogue, rows) -> Callable[[str, int], Optional[np.ndarray]]:
    """(category, photo id) -> its stored vector or None, reading only the categories (segments) or the ids
    (Milvus) of ``rows``."""
    rows = list(rows)
    if cat.milvus is not None:
        held = cat.milvus.vectors_of([r["photo_id"] for r in rows])
        return lambda category, photo_id: held.get(photo_id)
    segments = {c: load_category(cat.layout, cat.conn, c) for c in {r["category"] for r in rows}}
    return lambda category, photo_id: vector_in(segments[category], photo_id)


def _descriptors_of(cat: Catalogue, todo: Sequence[Tuple[ProductLine, str]], report: AddReport, **compute_opts
                    ) -> Tuple[Dict[CropKey, Tuple[Computed, Optional[np.ndarray]]], Path]:
    """Crop key -> (its crop, its vector or None when unusable): reused where the catalogue has it,
    computed once per key otherwise; and the staging folder of the computation."""
    keys = [_crop_key(sha, ln.category, ln.box_xyxy) for ln, sha in todo]
    results: Dict[CropKey, Tuple[Computed, Optional[np.ndarray]]] = dict(_known_descriptors(cat, keys))
    report.reused_descriptors = sum(k in results for k in keys)
    first: Dict[CropKey, Tuple[str, str, Optional[BoxXYXY]]] = {}
    for k, (ln, _) in zip(keys, todo):
        if k not in results and k not in first:
            first[k] = (str(ln.photo), ln.category, ln.box_xyxy)
    computed, descriptors, staging = compute_all(cat.root, list(first.values()), **compute_opts)
    row = 0
    for k, c in zip(first, computed):
        results[k] = (c, None if c.reason else descriptors[row])
        row += c.reason is None
    return results, staging


def _without_duplicates(cat: Catalogue, todo: Sequence[Tuple[ProductLine, str]], results, report: AddReport,
                        policy: str) -> List[Tuple[ProductLine, str]]:
    """``todo`` less the duplicates when ``policy`` is skip; every duplicate found listed in ``report``."""
    if policy == "off":
        return list(todo)
    computed = [(ln, sha, results[_crop_key(sha, ln.category, ln.box_xyxy)]) for ln, sha in todo]
    entries = [NewEntry(ln.line, ln.source, ln.product, ln.category, sha, vector, ln.photo)
               for ln, sha, (c, vector) in computed if c.reason is None]
    if not entries:
        return list(todo)
    exact = {r["sha256"]: {"photo_id": int(r["photo_id"]), "product": r["product"], "file": r["file"]}
             for r in db.present_with_content(cat.conn, [e.sha256 for e in entries])}
    reader = cat.reader(searchable=True)
    found = find_duplicates(entries, exact, reader.search, lambda ids: db.visible_photos(cat.conn, ids), cat.root)
    skip = set()
    for i, dup in sorted(found.items()):
        report.duplicates.append({"line": entries[i].line, "photo": entries[i].source,
                                  "product": entries[i].product, "kind": dup.kind, "of": dup.of,
                                  "difference": dup.difference, "action": "skipped" if policy == "skip" else "kept"})
        if policy == "skip":
            skip.add(entries[i].line)
    return [(ln, sha) for ln, sha in todo if ln.line not in skip]


def add_lines(cat: Catalogue, lines: Sequence[ProductLine], models: Optional[BoundModels] = None, *,
              device="cpu", batch_size: int = 16, parallel: Optional[DataParallel] = None,
              duplicates: str = "keep") -> AddReport:
    """Crop, embed and add the lines' new photos as one change (the caller holds the writer's lock).
    ``models``: the catalogue's, already loaded (the service); else loaded on ``device`` when needed.
    ``duplicates`` (``duplicates.py``): keep (and report), skip (and report) or off (not looked for)."""
    if duplicates not in DUPLICATE_POLICIES:
        raise InputError(f"--duplicates {duplicates!r}: expected one of {', '.join(DUPLICATE_POLICIES)}")
    report = AddReport()
    _check_known_products(cat, lines)
    todo = _new_lines(cat, lines, report)
    results, staging = _descriptors_of(cat, todo, report, models=models, device=device, batch_size=batch_size,
                                       parallel=parallel)
    photos: List[NewPhoto] = []
    vectors: List[np.ndarray] = []
    stored: List[str] = []
    todo = _without_duplicates(cat, todo, results, report, duplicates)
    try:
        for ln, sha in todo:
            c, vector = results[_crop_key(sha, ln.category, ln.box_xyxy)]
            if c.reason is not None:
                report.unreadable.append({"line": ln.line, "photo": ln.source, "reason": c.reason})
                continue
            stored.append(store_photo(cat, ln.photo, sha))
            photos.append(NewPhoto(ln.product, ln.category, sha, stored[-1], ln.source, c.width, c.height,
                                   c.box_xyxy, c.rule, ln.title, ln.url))
            vectors.append(vector)
            report.crop_rules[c.rule] = report.crop_rules.get(c.rule, 0) + 1
        if photos:
            report.change_id = begin_add(cat.applier, photos, np.stack(vectors))
            finish_add_or_roll_back(cat.applier, report.change_id)
    except BaseException:
        free_unused_files(cat.applier, stored)  # a failed add leaves no stored photo that no row uses
        raise
    shutil.rmtree(staging, ignore_errors=True)
    report.added = len(photos)
    if photos:  # the change is done and visible: merges and training come after it
        report.maintenance = maintain(cat.applier, {p.category for p in photos})
    report.unreadable.sort(key=lambda u: u["line"])
    return report
