"""Atomic changes of a catalogue: a journal entry first, the vectors next, then one commit.

An add of photos with their descriptors:

1. one transaction: a ``changes`` row (``pending``), the products, the photo rows ``pending``
   (invisible to readers); inside it, before COMMIT, the descriptors and their photo ids are
   written to ``journal/<change>.npz`` (renamed into place);
2. each touched category's index: the change's ids removed, then added with their vectors,
   written to a temporary file and renamed (applying twice is applying once);
3. one transaction: the rows ``present``, each touched index's generation + 1, the change
   ``applied``;
4. the journal file deleted, the change ``done``.

A removal marks its rows ``removing`` (still visible) with a ``pending`` change, removes their ids
from the indexes (step 2), then in one transaction deletes the rows and the products left without
photos and bumps the generations (step 3); step 4 deletes the stored photos no row uses any more.

A kill before the first COMMIT leaves the catalogue as before (a journal file without its change
is deleted later); after it, :func:`reconcile` (run whenever a writer opens the catalogue) finishes
every change that is not ``done``, so the catalogue ends as after. Readers show only ``present``
and ``removing`` rows, whatever the index files hold at that moment.
"""
from __future__ import annotations

import json
import logging
import os
import sqlite3
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..runs.atomic import atomic_path
from .db import in_chunks, transaction
from .layout import CatalogueLayout
from .vectors import read_index, replace_vectors, write_index

logger = logging.getLogger(__name__)

KILL_POINT_ENV = "DETRET_CATALOGUE_KILL_AT"  # tests: SIGKILL this process at a named step


def _maybe_die(point: str) -> None:
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
    """Where the changes go: the database connection (of the lock holder) and the index settings."""

    conn: sqlite3.Connection
    layout: CatalogueLayout
    index_factory: str
    dim: int


def _upsert_products(conn: sqlite3.Connection, photos: Sequence[NewPhoto]) -> None:
    for p in photos:
        conn.execute("INSERT INTO products (product, category, title, url) VALUES (?, ?, ?, ?) "
                     "ON CONFLICT (product) DO UPDATE SET title = COALESCE(excluded.title, title), "
                     "url = COALESCE(excluded.url, url)", (p.product, p.category, p.title, p.url))


def begin_add(ap: Applier, photos: Sequence[NewPhoto], descriptors: np.ndarray) -> int:
    """Step 1 of an add; the change's id."""
    with transaction(ap.conn) as conn:
        change_id = conn.execute("INSERT INTO changes (kind, state, detail) VALUES ('add', 'pending', ?)",
                                 (json.dumps({"photos": len(photos)}),)).lastrowid
        _upsert_products(conn, photos)
        ids = []
        for p in photos:
            ids.append(conn.execute(
                "INSERT INTO photos (product, category, sha256, file, source, width, height, box_xyxy, rule, state, "
                "change_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?)",
                (p.product, p.category, p.sha256, p.file, p.source, p.width, p.height,
                 None if p.box_xyxy is None else json.dumps([round(float(v), 2) for v in p.box_xyxy]), p.rule,
                 change_id)).lastrowid)
        with atomic_path(ap.layout.journal_file(change_id)) as tmp:
            np.savez(tmp, photo_ids=np.asarray(ids, np.int64), descriptors=np.ascontiguousarray(descriptors, np.float32))
        _maybe_die("add:journal-written")
    _maybe_die("add:pending-committed")
    return change_id


def begin_remove(ap: Applier, where: str, args: Sequence) -> Optional[int]:
    """Step 1 of a removal of the visible photos ``WHERE <where>``; None when there are none."""
    with transaction(ap.conn) as conn:
        n = conn.execute(f"SELECT COUNT(*) FROM photos WHERE state = 'present' AND ({where})", args).fetchone()[0]
        if n == 0:
            return None
        change_id = conn.execute("INSERT INTO changes (kind, state) VALUES ('remove', 'pending')").lastrowid
        conn.execute(f"UPDATE photos SET state = 'removing', change_id = ? WHERE state = 'present' AND ({where})",
                     (change_id, *args))
    _maybe_die("remove:pending-committed")
    return change_id


def _touched(conn: sqlite3.Connection, change_id: int) -> Dict[str, List[int]]:
    by_cat: Dict[str, List[int]] = {}
    for r in conn.execute("SELECT category, photo_id FROM photos WHERE change_id = ? ORDER BY photo_id", (change_id,)):
        by_cat.setdefault(r["category"], []).append(r["photo_id"])
    return by_cat


def _update_indexes(ap: Applier, change_id: int, kind: str) -> Dict[str, int]:
    """Step 2: each touched index rewritten; category -> its vector count."""
    touched = _touched(ap.conn, change_id)
    vectors: Dict[int, np.ndarray] = {}
    if kind == "add":
        with np.load(ap.layout.journal_file(change_id)) as z:
            vectors = dict(zip(z["photo_ids"].tolist(), z["descriptors"]))
    ntotal = {}
    for category, ids in sorted(touched.items()):
        path = ap.layout.index_file(category)
        index = read_index(path, ap.index_factory, ap.dim)
        if kind == "add":
            replace_vectors(index, ids, np.stack([vectors[i] for i in ids]))
        else:
            index.remove_ids(np.asarray(ids, np.int64))
        write_index(index, path)
        ntotal[category] = int(index.ntotal)
        _maybe_die(f"{kind}:index-written")
    return ntotal


def _commit(ap: Applier, change_id: int, kind: str, ntotal: Dict[str, int]) -> List[str]:
    """Step 3; the stored photo files a removal may have freed."""
    freed: List[str] = []
    with transaction(ap.conn) as conn:
        if kind == "add":
            conn.execute("UPDATE photos SET state = 'present' WHERE change_id = ?", (change_id,))
        else:
            freed = [r["file"] for r in conn.execute("SELECT DISTINCT file FROM photos WHERE change_id = ? AND "
                                                     "state = 'removing'", (change_id,))]
            products = [r[0] for r in conn.execute("SELECT DISTINCT product FROM photos WHERE change_id = ?",
                                                   (change_id,))]
            conn.execute("DELETE FROM photos WHERE change_id = ? AND state = 'removing'", (change_id,))
            for chunk in in_chunks(products):
                conn.execute(f"DELETE FROM products WHERE product IN ({','.join('?' * len(chunk))}) AND NOT EXISTS "
                             "(SELECT 1 FROM photos WHERE photos.product = products.product)", chunk)
        for category, n in ntotal.items():
            conn.execute("INSERT INTO indexes (category, generation, ntotal) VALUES (?, 1, ?) ON CONFLICT (category) "
                         "DO UPDATE SET generation = generation + 1, ntotal = excluded.ntotal", (category, n))
        conn.execute("UPDATE changes SET state = 'applied', detail = json_set(detail, '$.freed', json(?)) "
                     "WHERE change_id = ?", (json.dumps(freed), change_id))
    _maybe_die(f"{kind}:applied")
    return freed


def _clean_up(ap: Applier, change_id: int, kind: str) -> None:
    """Step 4: files the change no longer needs."""
    if kind == "add":
        ap.layout.journal_file(change_id).unlink(missing_ok=True)
    else:
        detail = json.loads(ap.conn.execute("SELECT detail FROM changes WHERE change_id = ?",
                                            (change_id,)).fetchone()[0])
        for chunk in in_chunks(detail.get("freed", [])):
            marks = ",".join("?" * len(chunk))
            used = {r[0] for r in ap.conn.execute(f"SELECT DISTINCT file FROM photos WHERE file IN ({marks})", chunk)}
            for f in set(chunk) - used:
                (ap.layout.root / f).unlink(missing_ok=True)
    ap.conn.execute("UPDATE changes SET state = 'done', finished = datetime('now') WHERE change_id = ?", (change_id,))


def apply_change(ap: Applier, change_id: int) -> None:
    """Steps 2-4 of change ``change_id`` from wherever it stopped."""
    kind, state = ap.conn.execute("SELECT kind, state FROM changes WHERE change_id = ?", (change_id,)).fetchone()
    if state == "pending":
        _commit(ap, change_id, kind, _update_indexes(ap, change_id, kind))
    if state in ("pending", "applied"):
        _clean_up(ap, change_id, kind)


def reconcile(ap: Applier) -> List[int]:
    """Finish every change a killed writer left; delete journal files of changes never committed."""
    unfinished = [r[0] for r in ap.conn.execute("SELECT change_id FROM changes WHERE state != 'done' "
                                                "ORDER BY change_id")]
    for change_id in unfinished:
        logger.info("%s: finishing change %d, interrupted earlier", ap.layout.root, change_id)
        apply_change(ap, change_id)
    known = {r[0] for r in ap.conn.execute("SELECT change_id FROM changes WHERE state = 'pending'")}
    if ap.layout.journal_dir.is_dir():
        for f in ap.layout.journal_dir.glob("*.npz"):
            if f.stem.isdigit() and int(f.stem) not in known:
                f.unlink(missing_ok=True)
    for folder in (ap.layout.journal_dir, ap.layout.indexes_dir):  # temporary files of a killed write
        for f in folder.glob(".*.tmp*") if folder.is_dir() else ():
            f.unlink(missing_ok=True)
    return unfinished
