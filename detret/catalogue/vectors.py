"""The catalogue's vectors as a reader holds them: every category's segments and tombstones, kept up to date.

:class:`CatalogueVectors` is what the service, ``catalogue add`` (reusing a stored descriptor), ``check``
and the tests read vectors through. :meth:`~CatalogueVectors.refresh` compares the categories' generations
with the ones it read last; when one changed it reads, from one database snapshot, the registered
segments and the tombstones written since, loads only the segments it does not hold, and marks dead the
rows of the new tombstones. A segment a compaction deleted between the snapshot and its loading is looked
for again in a newer snapshot; one still missing after that was lost (a disk's fault), and one that
cannot be read is damaged: either is left out with an error in the log (the other segments are served), and ``catalogue check`` reports its photos' vectors missing (``repair``
computes them again).
"""
from __future__ import annotations

import json
import logging
import sqlite3
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np

from . import db
from .layout import CatalogueLayout
from .segments import LoadedSegment, search_segments

logger = logging.getLogger(__name__)

# what numpy (a truncated or foreign .npy: ValueError, OSError) and FAISS (RuntimeError) raise for a damaged file
UNREADABLE = (ValueError, OSError, RuntimeError)
_LOAD_TRIES = 5   # a compaction deleting a segment while it is being loaded, five times in a row, is not a race


class CatalogueVectors:
    """``searchable``: also build the exact scan of float16 segments (a server; not ``add`` or ``check``,
    which only read vectors)."""

    def __init__(self, layout: CatalogueLayout, searchable: bool = True) -> None:
        self.layout, self.searchable = layout, searchable
        self.segments: Dict[str, Dict[str, LoadedSegment]] = {}   # category -> name -> segment
        self.generations: Dict[str, int] = {}
        self.tombstone_seq = 0

    def refresh(self, conn: sqlite3.Connection) -> bool:
        """Load what changed since the last refresh; whether anything did."""
        if db.generations(conn) == self.generations:
            return False
        for attempt in range(_LOAD_TRIES):
            try:
                self._load(conn, skip_missing=attempt == _LOAD_TRIES - 1)
                return True
            except FileNotFoundError:
                continue
        return True

    def _load(self, conn: sqlite3.Connection, skip_missing: bool) -> None:
        with db.read_snapshot(conn):
            generations = db.generations(conn)
            registered = db.segments(conn)
            new_tombstones = db.tombstones_since(conn, self.tombstone_seq)
            fresh: Dict[str, Dict[str, LoadedSegment]] = {}
            for r in registered:
                held = self.segments.get(r["category"], {}).get(r["name"])
                if held is None:
                    try:
                        held = self._open(conn, r)
                    except FileNotFoundError as exc:
                        if not skip_missing:
                            raise
                        _log_lost(self.layout, exc)
                        continue
                    except UNREADABLE as exc:   # a damaged file: this segment left out, the others served
                        _log_lost(self.layout, exc)
                        continue
                fresh.setdefault(r["category"], {})[r["name"]] = held
        by_category: Dict[str, List[int]] = {}
        for t in new_tombstones:
            by_category.setdefault(t["category"], []).append(t["photo_id"])
        for category, ids in by_category.items():
            dead = np.sort(np.asarray(ids, np.int64))
            for seg in fresh.get(category, {}).values():
                seg.kill(dead)
        self.segments, self.generations = fresh, generations
        if new_tombstones:
            self.tombstone_seq = new_tombstones[-1]["seq"]

    def _open(self, conn: sqlite3.Connection, row: sqlite3.Row) -> LoadedSegment:
        """A segment not held yet, with every tombstone of its category applied."""
        return _segment_of(self.layout, row, _dead_ids(conn, row["category"]), self.searchable)

    def search(self, category: str, queries: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
        """(scores [Q, k], photo ids [Q, k]; -1 past the end) in the category, removed photos left out."""
        return search_segments(list(self.segments.get(category, {}).values()), queries, k)

    def vector(self, category: str, photo_id: int) -> Optional[np.ndarray]:
        """The stored vector of a photo (float32; None when no segment holds it or it was removed)."""
        return vector_in(self.segments.get(category, {}).values(), photo_id)

    def categories(self) -> List[str]:
        """The categories some loaded segment belongs to."""
        return sorted(self.segments)

    def live_ids(self, category: str) -> np.ndarray:
        """The photo ids the category's segments hold and no tombstone removed."""
        parts = [s.ids if s.dead is None else s.ids[~s.dead] for s in self.segments.get(category, {}).values()]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def load_category(layout: CatalogueLayout, conn: sqlite3.Connection, category: str) -> List[LoadedSegment]:
    """The category's registered segments, their tombstoned rows marked dead (for its one writer, so nothing
    deletes a file meanwhile: a missing one was lost, left out with an error in the log)."""
    dead = _dead_ids(conn, category)
    out = []
    for r in db.segments(conn):
        if r["category"] == category:
            try:
                out.append(_segment_of(layout, r, dead, searchable=False))
            except (FileNotFoundError, *UNREADABLE) as exc:
                _log_lost(layout, exc)
    return out


def vector_in(segments: Iterable[LoadedSegment], photo_id: int) -> Optional[np.ndarray]:
    """A photo's stored vector (float32) in whichever of ``segments`` holds it alive, or None."""
    return next((v for v in (s.vector(photo_id) for s in segments) if v is not None), None)


def _dead_ids(conn: sqlite3.Connection, category: str) -> np.ndarray:
    return np.sort(np.asarray(db.tombstones_of(conn, category), np.int64))


def _segment_of(layout: CatalogueLayout, row: sqlite3.Row, dead: np.ndarray, searchable: bool) -> LoadedSegment:
    """The registered segment of database row ``row``, its rows among ``dead`` (sorted photo ids) marked dead."""
    seg = LoadedSegment.load(layout.segment_dir(row["category"]), row["name"],
                             None if row["params"] is None else json.loads(row["params"]), searchable=searchable)
    seg.kill(dead)
    return seg


def _log_lost(layout: CatalogueLayout, exc: Exception) -> None:
    logger.error("%s: a segment file is lost or unreadable (%s: %s); `detret catalogue repair` computes its "
                 "vectors again", layout.root, type(exc).__name__, exc)


def load_vectors(layout: CatalogueLayout, conn: sqlite3.Connection, searchable: bool = True) -> CatalogueVectors:
    vectors = CatalogueVectors(layout, searchable)
    vectors.refresh(conn)
    return vectors
