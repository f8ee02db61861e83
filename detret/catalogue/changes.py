"""Atomic changes of a catalogue: a journal entry first, then one commit that readers see at once.

An add of photos with their descriptors:

1. one transaction: a ``changes`` row (``pending``, with the titles and urls the add brings), new
   products, the photo rows ``pending`` (invisible to readers); inside it, before COMMIT, the
   descriptors and their photo ids are written to ``journal/<change>.npz`` (renamed into place);
2. each touched category gets a new segment ``add-<change>`` with the change's vectors (``segments.py``:
   files renamed into place; written again by a replay, so applying twice is applying once); no
   existing file is read or rewritten;
3. one transaction: the segments registered, the rows ``present``, the products' new titles and urls,
   each touched category's generation + 1, the change ``applied``: from here on readers see the new
   photos and titles (and load the new segments, nothing else);
4. the journal file deleted, the change ``done``.

A removal is one transaction that deletes the rows (and the products left without photos), writes their
ids as tombstones, records their ids, categories and files in the change (``applied``) and bumps the
generations: readers stop seeing the photos at once (they mark the tombstoned rows dead). Then the stored
photos no row uses any more are deleted, and the change is ``done``. No index file is touched: a
compaction (``compact.py``) drops tombstoned vectors later.

A kill before an add's first COMMIT leaves the catalogue as before (a journal file without its change is
deleted later); after it, :func:`reconcile` (run whenever a writer opens the catalogue) finishes every
change that is not ``done``, so the catalogue ends as after. Readers load only registered segments
and show only ``present`` rows: a segment of an add not committed yet is invisible, and a removed photo
is left out from the commit of its removal on, never a visible photo missed.

Every rename is flushed with its folder (``runs/atomic.py``), and SQLite commits with
``synchronous=FULL``, so a power cut leaves the same states as a kill. Two cases cannot be finished
and are rolled back instead (the add is lost, never half-made; rerun it): a pending add whose journal
is missing or unreadable (a disk that lost it), and a pending add that fails for lack of disk space
(:class:`~detret.utils.disk.DiskSpaceError`), so that a full disk never blocks the writers that free
space (``catalogue remove``).
"""
from __future__ import annotations

import errno
import json
import logging
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence

import numpy as np

from ..runs.atomic import atomic_path, is_temporary
from ..utils.disk import DiskSpaceError
from . import db
from .db import transaction
from .layout import CatalogueLayout
from .segments import segment_name, vector_dtype, write_segment

if TYPE_CHECKING:
    from .milvus import MilvusStore

logger = logging.getLogger(__name__)

KILL_POINT_ENV = "DETRET_CATALOGUE_KILL_AT"  # tests: SIGKILL this process at a named step
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def maybe_die(point: str) -> None:
    """Kill this process at ``point`` when the tests ask for it (``DETRET_CATALOGUE_KILL_AT``)."""
    if os.environ.get(KILL_POINT_ENV) == point:
        os.kill(os.getpid(), 9)


@dataclass
class NewPhoto:
    """A photo row to add: its stored file, crop and product (with the product's title and url)."""

    product: str
    category: str
    sha256: str
    file: str
    source: Optional[str]
    width: int
    height: int
    box_xyxy: Optional[Sequence[float]]
    rule: str
    title: Optional[str] = None
    url: Optional[str] = None


@dataclass
class Applier:
    """Where the changes go: the database connection (of the lock holder), the index settings, and the
    catalogue's Milvus collection when its vectors live there (``milvus.py``; else segment files)."""

    conn: sqlite3.Connection
    layout: CatalogueLayout
    index_factory: str
    dim: int
    milvus: Optional["MilvusStore"] = None

    @property
    def dtype(self) -> np.dtype:
        return vector_dtype(self.index_factory)


def _insert_products(conn: sqlite3.Connection, photos: Sequence[NewPhoto]) -> Dict[str, List]:
    """The products not in the catalogue yet (their photos are pending: no reader sees them); the titles
    and urls the add brings, product -> [title, url], applied when the add is (``_commit_add``)."""
    updates: Dict[str, List] = {}
    for p in photos:
        db.insert_product(conn, p.product, p.category, p.title, p.url)
        if p.title is not None or p.url is not None:
            old = updates.get(p.product, [None, None])
            updates[p.product] = [p.title if p.title is not None else old[0], p.url if p.url is not None else old[1]]
    return updates


def begin_add(ap: Applier, photos: Sequence[NewPhoto], descriptors: np.ndarray) -> int:
    """Step 1 of an add; the change's id."""
    with transaction(ap.conn) as conn:
        change_id = db.new_change(conn, "add", "pending")
        updates = _insert_products(conn, photos)
        db.set_change_detail(conn, change_id, {"photos": len(photos), "products": updates})
        ids = [db.insert_pending_photo(
            conn, change_id, product=p.product, category=p.category, sha256=p.sha256, file=p.file, source=p.source,
            width=p.width, height=p.height, rule=p.rule,
            box_xyxy=None if p.box_xyxy is None else json.dumps([round(float(v), 2) for v in p.box_xyxy]))
            for p in photos]
        with atomic_path(ap.layout.journal_file(change_id)) as tmp:
            np.savez(tmp, photo_ids=np.asarray(ids, np.int64), descriptors=np.ascontiguousarray(descriptors, np.float32))
        maybe_die("add:journal-written")
    maybe_die("add:pending-committed")
    return change_id


def remove(ap: Applier, column: str, values: Sequence) -> Optional[int]:
    """A removal of the visible photos whose ``column`` (``db.MATCH_COLUMNS``: product, sha256, source, file,
    photo_id) is one of ``values``, committed (readers no longer see them) and applied; its change id, or None
    when no photo matches."""
    with transaction(ap.conn) as conn:
        rows = db.present_matching(conn, column, values)
        if not rows:
            return None
        detail = {"photo_ids": {}, "files": sorted({r["file"] for r in rows})}
        for r in rows:
            detail["photo_ids"].setdefault(r["category"], []).append(r["photo_id"])
        change_id = db.new_change(conn, "remove", "applied", detail)
        db.delete_present_matching(conn, column, values)
        db.drop_products_without_photos(conn, {r["product"] for r in rows})
        for category, ids in detail["photo_ids"].items() if ap.milvus is None else ():
            db.add_tombstones(conn, category, ids)
        bump_generations(conn, detail["photo_ids"])
    maybe_die("remove:committed")
    apply_change(ap, change_id)
    return change_id


def bump_generations(conn: sqlite3.Connection, categories) -> None:
    """Each category's generation + 1: readers look for its new segments and tombstones."""
    for category in sorted(categories):
        db.bump_generation(conn, category)


def add_segment_name(change_id: int) -> str:
    return f"add-{change_id:08d}"


def _write_add_segments(ap: Applier, change_id: int, ids: Dict[str, List[int]]) -> Dict[str, int]:
    """The add's vectors (from its journal) as one new segment per touched category (or upserted into the
    Milvus collection, still invisible: no reader shows a photo the database does not); category -> photos."""
    with np.load(ap.layout.journal_file(change_id)) as z:
        journal_ids, descriptors = z["photo_ids"], z["descriptors"]
    row_of = {int(i): r for r, i in enumerate(journal_ids)}
    written = {}
    for category, category_ids in sorted(ids.items()):
        rows = np.asarray([row_of[i] for i in category_ids], np.int64)
        if ap.milvus is not None:
            ap.milvus.upsert(category, journal_ids[rows], descriptors[rows], change_id)
        else:
            write_segment(ap.layout.segment_dir(category), add_segment_name(change_id), journal_ids[rows],
                          descriptors[rows], ap.dtype)
        written[category] = len(rows)
        maybe_die("add:segment-written")
    return written


def _commit_add(ap: Applier, change_id: int, written: Dict[str, int]) -> None:
    with transaction(ap.conn) as conn:
        for category, n in written.items() if ap.milvus is None else ():
            db.register_segment(conn, category, add_segment_name(change_id), n)
        db.make_present(conn, change_id)
        _, _, detail = db.change_of(conn, change_id)
        for product, (title, url) in sorted(detail.get("products", {}).items()):
            db.update_product_text(conn, product, title, url)
        bump_generations(conn, written)
        db.set_change_state(conn, change_id, "applied")
    maybe_die("add:applied")


def free_unused_files(ap: Applier, files: Sequence[str]) -> None:
    """Delete the stored photos no row uses any more."""
    for f in sorted(set(files) - db.files_in_use(ap.conn, files)):
        (ap.layout.root / f).unlink(missing_ok=True)


def apply_change(ap: Applier, change_id: int) -> None:
    """Whatever change ``change_id`` still needs, from wherever it stopped."""
    kind, state, detail = db.change_of(ap.conn, change_id)
    if kind == "add":
        if state == "pending":
            _commit_add(ap, change_id, _write_add_segments(ap, change_id, db.photo_ids_of_change(ap.conn,
                                                                                                 change_id)))
        ap.layout.journal_file(change_id).unlink(missing_ok=True)
        db.finish_change(ap.conn, change_id)
        return
    if ap.milvus is not None:   # the removal is committed: its rows go (again, harmlessly, in a replay)
        ap.milvus.delete([i for ids in detail["photo_ids"].values() for i in ids])
        maybe_die("remove:vectors-deleted")
    free_unused_files(ap, detail["files"])
    maybe_die("remove:files-freed")
    db.finish_change(ap.conn, change_id)


def journal_readable(ap: Applier, change_id: int) -> Optional[str]:
    """None when the add's journal holds its descriptors; else what is wrong with it."""
    path = ap.layout.journal_file(change_id)
    if not path.is_file():
        return f"its journal {path.name} is missing"
    try:
        with np.load(path) as z:
            ids, desc = z["photo_ids"], z["descriptors"]
    except Exception as exc:  # noqa: BLE001 -- numpy/zipfile raise many types for a damaged file: unreadable
        return f"its journal {path.name} is unreadable ({type(exc).__name__}: {exc})"
    if desc.ndim != 2 or len(ids) != len(desc) or desc.shape[1] != ap.dim:
        return f"its journal {path.name} holds {desc.shape} descriptors for {len(ids)} photos of dimension {ap.dim}"
    return None


def rollback_add(ap: Applier, change_id: int, reason: str) -> None:
    """Undo a pending add (its rows, the products only it brought, the photos only it stored): the catalogue
    as before it. Segment files it may have written are not registered: invisible, deleted below."""
    logger.warning("%s: rolling back change %d: %s", ap.layout.root, change_id, reason)
    if ap.milvus is not None:   # rows it may have upserted (invisible: their photos were never present)
        ap.milvus.delete([i for ids in db.photo_ids_of_change(ap.conn, change_id).values() for i in ids])
    with transaction(ap.conn) as conn:
        rows = db.pending_of_change(conn, change_id)
        db.delete_pending(conn, change_id)
        db.drop_products_without_photos(conn, {r["product"] for r in rows})
        db.finish_change(conn, change_id, rolled_back=reason)
    free_unused_files(ap, sorted({r["file"] for r in rows}))
    ap.layout.journal_file(change_id).unlink(missing_ok=True)
    delete_unregistered_segments(ap)


def finish_add_or_roll_back(ap: Applier, change_id: int) -> None:
    """Apply a pending add; roll it back when it cannot be applied (no journal, or no disk space left)."""
    problem = journal_readable(ap, change_id)
    if problem is not None:
        return rollback_add(ap, change_id, problem)
    try:
        apply_change(ap, change_id)
    except OSError as exc:
        if exc.errno not in DISK_FULL_ERRNOS:
            raise
        rollback_add(ap, change_id, f"no disk space left ({exc.strerror})")
        raise DiskSpaceError(f"{ap.layout.root}: the disk is full ({exc.strerror}); the add was rolled back, nothing "
                             "changed: free space (`catalogue remove` works) and run it again") from None


def reconcile(ap: Applier) -> List[int]:
    """Finish every change a killed writer left (or roll back an add that cannot be finished, see the module
    docstring); delete journal files of changes never committed."""
    unfinished = db.unfinished_changes(ap.conn)
    for change_id, kind, state in unfinished:
        logger.info("%s: finishing change %d, interrupted earlier", ap.layout.root, change_id)
        if kind == "add" and state == "pending":
            try:
                finish_add_or_roll_back(ap, change_id)
            except DiskSpaceError:
                pass  # rolled back: the writer that opened the catalogue goes on (a removal frees space)
        else:
            apply_change(ap, change_id)
    known = db.pending_change_ids(ap.conn)
    for f in ap.layout.journal_dir.iterdir() if ap.layout.journal_dir.is_dir() else ():
        never_committed = f.suffix == ".npz" and f.stem.isdigit() and int(f.stem) not in known
        if never_committed or is_temporary(f.name):  # (a temporary file: of a killed write)
            f.unlink(missing_ok=True)
    delete_unregistered_segments(ap)
    return [r[0] for r in unfinished]


def unregistered_files(ap: Applier) -> List[Path]:
    """Files under ``indexes/`` no reader will load: segments no row registers (of an add rolled back or a
    killed compaction; not those of an add still pending), trained indexes no row names, temporary files."""
    if not ap.layout.indexes_dir.is_dir():
        return []
    registered = {(r["category"], r["name"]) for r in db.segments(ap.conn)}
    registered |= {(c, add_segment_name(i)) for c, i in db.pending_segments(ap.conn)}
    trained = {(c, t["file"]) for c, t in db.trainings(ap.conn).items()}
    out = []
    for f in sorted(p for p in ap.layout.indexes_dir.rglob("*") if p.is_file()):
        if is_temporary(f.name) or f.parent == ap.layout.indexes_dir:   # (or a file of schema 1, converted)
            out.append(f)
        elif (f.parent.name, f.name) not in trained and (f.parent.name, segment_name(f)) not in registered:
            out.append(f)
    return out


def delete_unregistered_segments(ap: Applier) -> None:
    for f in unregistered_files(ap):
        f.unlink(missing_ok=True)
