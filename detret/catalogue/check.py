"""``catalogue check`` and ``catalogue repair``: do the database, the index files and the stored photos agree?

The database is the source of truth. :func:`check_catalogue` (read-only, no lock) compares, per category,
the ids its registered segments hold with the ``present`` rows and the tombstones, and the rows with the
stored photos:

- ``missing_vectors``: present photos whose vector no segment of their category holds (never found);
- ``extra_vectors``: ids a segment holds that neither a row nor a tombstone accounts for;
- ``lost_segments``: registered segments whose files are gone or damaged (a disk's fault): readers skip them;
- ``missing_files``: present photos whose stored file is gone (``/api/photos`` answers 404);
- ``orphan_files``: files under ``photos/`` that no row uses, files under ``indexes/`` no reader loads (a
  segment never registered, a schema-1 index file), and temporary files a killed write left;
- ``leftovers``: the staging folder of an add, and the hidden folders of a killed ``create`` or ``reindex``
  beside the catalogue;
- ``unfinished_changes``: changes not ``done`` (the next writer finishes or rolls them back).

:func:`repair_catalogue` (the writer's lock; interrupted changes reconciled first) makes them agree:
lost segments are unregistered, missing vectors are computed again from the stored photo and its recorded crop (the same descriptor
``catalogue add`` computed: same photo, same box, same model), photos whose stored file is gone are
removed (a change, so readers stop seeing them at once) and written as a new segment, extra ids become
tombstones, and orphan files and leftovers are deleted. Each step is one transaction that bumps the
category's generation, so servers load what changed; a killed repair is run again.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from ..data.images import PhotoError, read_rgb
from ..runs.atomic import is_temporary
from . import db
from .binding import BoundModels
from .changes import bump_generations, remove, unregistered_files
from .db import transaction
from .segments import LoadedSegment, new_name, write_segment
from .store import Catalogue
from .vectors import UNREADABLE

REEMBED_BATCH = 16


def _rows_by_category(cat: Catalogue) -> Dict[str, Dict[int, dict]]:
    out: Dict[str, Dict[int, dict]] = {}
    for r in db.all_photo_rows(cat.conn):
        out.setdefault(r["category"], {})[r["photo_id"]] = dict(r)
    return out


def _lost_segments(cat: Catalogue) -> Dict[str, List[str]]:
    """category -> its registered segments whose files are gone or cannot be read (none on Milvus)."""
    out: Dict[str, List[str]] = {}
    for r in db.segments(cat.conn):
        try:
            LoadedSegment.load(cat.layout.segment_dir(r["category"]), r["name"], searchable=False)
        except (FileNotFoundError, *UNREADABLE):
            out.setdefault(r["category"], []).append(r["name"])
    return out


def _vector_problems(cat: Catalogue) -> Dict[str, Dict[str, List[int]]]:
    rows = _rows_by_category(cat)
    vectors = cat.reader(searchable=False)
    out: Dict[str, Dict[str, List[int]]] = {}
    for category in sorted(set(rows) | set(vectors.categories())):
        live = set(vectors.live_ids(category).tolist())
        present = {i for i, r in rows.get(category, {}).items() if r["state"] == "present"}
        missing, extra = sorted(present - live), sorted(live - set(rows.get(category, {})))
        if missing or extra:
            out[category] = {"missing_vectors": missing, "extra_vectors": extra}
    return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def leftover_folders(root: Path) -> List[Path]:
    """Hidden folders a killed ``create`` / ``reindex`` of ``root`` left beside it (their process is gone)."""
    root = Path(root).resolve()
    out = []
    for p in root.parent.glob(f".{root.name}.*-*"):
        what, _, pid = p.name[len(root.name) + 2:].rpartition("-")
        if what in ("creating", "reindexing", "old") and pid.isdigit() and not _pid_alive(int(pid)):
            out.append(p)
    staging = root / "staging"
    if staging.is_dir() and any(staging.iterdir()):
        out.append(staging)
    return sorted(out)


def _file_problems(cat: Catalogue) -> Dict[str, List[str]]:
    used = db.files_in_use(cat.conn)
    missing = sorted(f for f in db.files_in_use(cat.conn, present_only=True) if not (cat.root / f).is_file())
    orphans = [f.relative_to(cat.root).as_posix() for f in unregistered_files(cat.applier)]
    for folder in ("photos", "journal"):
        base = cat.root / folder
        for path in sorted(base.rglob("*")) if base.is_dir() else ():
            relative = path.relative_to(cat.root).as_posix()
            if path.is_file() and (is_temporary(path.name) or (folder == "photos" and relative not in used)):
                orphans.append(relative)
    return {"missing_files": missing, "orphan_files": sorted(orphans)}


def check_catalogue(root: Path) -> Dict:
    """What disagrees (see the module docstring); ``ok`` when nothing does."""
    cat = Catalogue.open(root)
    try:
        lost = _lost_segments(cat)
        vectors = _vector_problems(cat)
        files = _file_problems(cat)
        unfinished = [dict(r) for r in db.unfinished_changes(cat.conn)]
    finally:
        cat.close()
    leftovers = [str(p) for p in leftover_folders(root)]
    ok = not (lost or vectors or files["missing_files"] or files["orphan_files"] or leftovers or unfinished)
    return {"ok": ok, "lost_segments": lost, "vectors": vectors, **files, "leftovers": leftovers,
            "unfinished_changes": unfinished}


def _reembed(cat: Catalogue, models: BoundModels, rows: List[dict]) -> Dict[str, List[int]]:
    """Vectors computed again for ``rows`` (their stored photo, their recorded crop), one new segment per
    category; category -> the ids that could not be read (their photo is unreadable now)."""
    unreadable: Dict[str, List[int]] = {}
    by_category: Dict[str, List[dict]] = {}
    for r in rows:
        by_category.setdefault(r["category"], []).append(r)
    for category, cat_rows in sorted(by_category.items()):
        ids, vectors = [], []
        for start in range(0, len(cat_rows), REEMBED_BATCH):
            batch_ids, photos, boxes = [], [], []
            for r in cat_rows[start:start + REEMBED_BATCH]:
                try:
                    photos.append(read_rgb(cat.root / r["file"]))
                except PhotoError:
                    unreadable.setdefault(category, []).append(r["photo_id"])
                    continue
                batch_ids.append(r["photo_id"])
                boxes.append(None if r["box_xyxy"] is None else tuple(db.box_of(r)))
            if batch_ids:
                ids += batch_ids
                vectors.append(models.describe(photos, boxes, "gallery"))
        if ids:
            _register_new_segment(cat, category, np.asarray(ids, np.int64), np.concatenate(vectors))
    return unreadable


def _register_new_segment(cat: Catalogue, category: str, ids: np.ndarray, vectors: np.ndarray) -> None:
    if cat.milvus is not None:   # present photos' rows written again (by id: a repair run twice writes them twice)
        cat.milvus.upsert(category, ids, vectors, 0)
        return
    name = new_name("repair")
    write_segment(cat.layout.segment_dir(category), name, ids, vectors, cat.applier.dtype)
    with transaction(cat.conn) as conn:
        db.register_segment(conn, category, name, len(ids))
        bump_generations(conn, [category])


def _drop_extra(cat: Catalogue, extra: Dict[str, List[int]]) -> None:
    if cat.milvus is not None:   # rows no photo has: deleted by id
        cat.milvus.delete([i for ids in extra.values() for i in ids])
        return
    with transaction(cat.conn) as conn:
        for category, ids in sorted(extra.items()):
            if ids:
                db.add_tombstones(conn, category, ids)
        bump_generations(conn, [c for c, ids in extra.items() if ids])


def _delete_files(cat: Catalogue, relative: List[str], folders: List[Path]) -> None:
    for f in relative:
        (cat.root / f).unlink(missing_ok=True)
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


def repair_catalogue(root: Path, *, device="cpu", models: Optional[BoundModels] = None) -> Dict:
    """Make the database, the indexes and the stored photos agree (see the module docstring); what was done."""
    with Catalogue.writing(root, "detret catalogue repair") as cat:
        files = _file_problems(cat)
        gone = files["missing_files"]
        removed = remove(cat.applier, "file", gone) if gone else None
        lost = _lost_segments(cat)
        with transaction(cat.conn) as conn:
            for category, names in lost.items():
                db.unregister_segments(conn, category, names)
            bump_generations(conn, lost)
        vectors = _vector_problems(cat)
        rows = _rows_by_category(cat)
        need = [rows[c][i] for c, p in vectors.items() for i in p["missing_vectors"]]
        unreadable: Dict[str, List[int]] = {}
        if need:
            unreadable = _reembed(cat, models or BoundModels(cat.card, cat.root, device), need)
        _drop_extra(cat, {c: p["extra_vectors"] for c, p in vectors.items()})
        if unreadable:
            remove(cat.applier, "photo_id", [i for ids in unreadable.values() for i in ids])
        leftovers = leftover_folders(root)
        orphans = _file_problems(cat)["orphan_files"]
        _delete_files(cat, orphans, leftovers)
    failed = {i for ids in unreadable.values() for i in ids}
    return {"reconciled_changes": cat.reconciled, "removed_missing_files": gone, "removal_change": removed,
            "unregistered_lost_segments": lost,
            "reembedded": sorted(r["photo_id"] for r in need if r["photo_id"] not in failed),
            "removed_unreadable": unreadable,
            "dropped_extra_vectors": {c: p["extra_vectors"] for c, p in vectors.items() if p["extra_vectors"]},
            "deleted_orphan_files": orphans, "deleted_leftovers": [str(p) for p in leftovers]}

