"""``catalogue reindex DIR --vectors SPEC`` without ``--run``: the catalogue's vectors moved to another store
(segment files <-> Milvus, or another Milvus) with nothing recomputed.

Built as ``reindex`` builds (``create.py``): under the old catalogue's writer lock, a copy in a hidden folder
beside it (the database copied with SQLite's backup API, the photos and model files hard-linked where the
file system allows), every present photo's stored vector written to the new store, the index policy applied,
and the folders exchanged in one rename; a server follows it at its next search. A kill before the
exchange leaves the old catalogue as it was (the hidden folder is a leftover ``catalogue check`` reports; an
orphan collection on a Milvus server is dropped when the copy is abandoned, not when the process is killed).
The old catalogue's collection on a Milvus server is dropped after the exchange.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Dict, Iterator, Optional, Tuple

import numpy as np

from ..errors import InputError
from ..runs.atomic import atomic_write_json
from . import db
from .binding import read_card
from .compact import maintain
from .create import abandon_new, collection_outside, exchange_dirs, staging_folder
from .indexing import check_setting
from .layout import CatalogueLayout
from .milvus import VectorsSpec, check_index, vectors_meta
from .segments import new_name, write_segment
from .store import Catalogue
from .vectors import load_category

CHUNK_ROWS = 65_536   # vectors held in memory at a time while moving


def _link_tree(src: Path, dst: Path) -> None:
    """``src`` as ``dst``, files hard-linked (copied across file systems)."""
    def link(a, b):
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)
    if src.is_dir():
        shutil.copytree(src, dst, copy_function=link)


def _copy_database(src: sqlite3.Connection, path: Path) -> sqlite3.Connection:
    dst = db.connect(path, create=True)
    src.backup(dst)
    return dst


def _new_copy(old: Catalogue, folder: Path, spec: VectorsSpec, factory: str) -> Catalogue:
    """The old catalogue's database, photos and models in ``folder``, with no vectors yet, bound to ``spec``."""
    for part in ("photos", "models"):
        _link_tree(old.root / part, folder / part)
    card = dataclasses.replace(old.card, index_factory=factory)
    atomic_write_json(CatalogueLayout(folder).model, card.to_json())
    conn = _copy_database(old.conn, CatalogueLayout(folder).db)
    with db.transaction(conn):
        db.forget_segments(conn)
        db.set_meta(conn, vectors_meta(spec, folder, old.card.dim, factory))
    return Catalogue(folder, conn, read_card(folder))


def _stored_vectors(old: Catalogue, category: str) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """(photo ids, float32 vectors) of the category's present photos, a chunk at a time."""
    present = np.asarray(sorted(db.present_ids_by_category(old.conn).get(category, ())), np.int64)
    if old.milvus is not None:
        for start in range(0, len(present), CHUNK_ROWS):
            held = old.milvus.vectors_of(present[start:start + CHUNK_ROWS])
            ids = np.asarray(sorted(held), np.int64)
            yield ids, np.stack([held[i] for i in ids]) if len(ids) else np.zeros((0, old.card.dim), np.float32)
        return
    for seg in load_category(old.layout, old.conn, category):
        keep = np.isin(seg.ids, present)
        for start in range(0, len(seg.ids), CHUNK_ROWS):
            rows = np.flatnonzero(keep[start:start + CHUNK_ROWS]) + start
            yield seg.ids[rows], np.asarray(seg.vectors[rows], np.float32)


def _write_vectors(new: Catalogue, category: str, ids: np.ndarray, vectors: np.ndarray) -> None:
    if new.milvus is not None:
        new.milvus.upsert(category, ids, vectors, 0)
        return
    name = new_name("moved")
    write_segment(new.layout.segment_dir(category), name, ids, vectors, new.applier.dtype)
    with db.transaction(new.conn) as conn:
        db.register_segment(conn, category, name, len(ids))


def _missing(old: Catalogue, moved: Dict[str, int]) -> Dict[str, int]:
    counts = {c: n["photos"] for c, n in db.counts_by_category(old.conn).items()}
    return {c: counts[c] - moved.get(c, 0) for c in counts if counts[c] != moved.get(c, 0)}


def move_vectors(root: Path, vectors: str, index_factory: Optional[str] = None) -> Dict:
    """The catalogue at ``root`` with its vectors in ``vectors`` (``faiss`` or ``milvus:URI``), indexed by
    ``index_factory`` (default: the old setting when the new store accepts it)."""
    root, spec = Path(root), VectorsSpec.parse(vectors)
    with Catalogue.writing(root, "detret catalogue reindex --vectors") as old:
        factory = index_factory or old.card.index_factory
        check_index(factory) if spec.is_milvus else check_setting(factory, old.card.dim)
        tmp, new = staging_folder(root, "reindexing"), None
        try:
            new = _new_copy(old, tmp, spec, factory)
            moved: Dict[str, int] = {}
            for category in sorted(db.counts_by_category(old.conn)):
                for ids, chunk in _stored_vectors(old, category):
                    _write_vectors(new, category, ids, chunk)
                    moved[category] = moved.get(category, 0) + len(ids)
            if _missing(old, moved):
                raise InputError(f"{root}: the vectors of {_missing(old, moved)} photos are missing (lost segment "
                                 "files?); `detret catalogue repair` computes them again, then move")
            with db.transaction(new.conn) as conn:
                for category in moved:
                    db.bump_generation(conn, category)
            maintain(new.applier, sorted(moved))
            new.close()
            old.close_vectors()   # (its Milvus Lite folder, inside it, moves with it)
            exchange_dirs(tmp, root)
        except BaseException:
            abandon_new(new, tmp)
            raise
        if collection_outside(old, root):   # the old collection (on a server, or a Lite folder elsewhere)
            old.milvus.drop()                # is no catalogue's any more
    shutil.rmtree(tmp, ignore_errors=True)   # the old catalogue, now there
    return {"catalogue": str(root), "vectors": str(spec), "index_factory": factory, "moved": moved,
            "recomputed": 0}
