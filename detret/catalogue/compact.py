"""The catalogue's maintenance, off a change's path: merging segments, dropping tombstones, training indexes.

- :func:`maintain` runs in every writer after its change is done (the change is visible before it starts),
  for each category the change touched:

  1. a full compaction of the category when it needs (re)training (``indexing.needs_training``) or when
     tombstones are more than ``DEAD_SHARE`` of the rows its segments hold;
  2. otherwise log merges: segments grouped by level floor(log_8 rows); a level holding ``MERGE_FACTOR``
     segments is merged into one, which may fill the next level (so a category holds O(log N) segments,
     each vector is rewritten about log_8 N times over the catalogue's life, and a merge costs what it
     merges, never the whole category unless the category is that small).

- :func:`compact` (``catalogue compact``): every category (or those named) merged into one segment,
  tombstones dropped, (re)trained by the policy or when asked (``retrain``), the recall measured again.

A merge writes the live rows of its segments as one new segment (indexed when the category is trained and
the segment has ``indexing.INDEX_MIN_ROWS`` rows), then one transaction registers it, unregisters the merged
segments, forgets their tombstones, records a new training and bumps the generation; the old files are
deleted last. Killed before that transaction, the new files are unregistered (the next writer deletes
them) and readers go on with the old segments; after it, the old files are the unregistered ones.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..runs.atomic import atomic_path
from ..search.faiss_lib import faiss
from . import db, indexing
from .changes import Applier, maybe_die, bump_generations
from .db import transaction
from .segments import LoadedSegment, delete_segment, new_name, write_segment
from .milvus import maintain_collection
from .vectors import load_category

DEAD_SHARE = 0.25
MERGE_FACTOR_BITS = 3
MERGE_FACTOR = 2 ** MERGE_FACTOR_BITS   # 8 segments of a level are merged into one of the next


@dataclass
class MergeReport:
    category: str
    merged_segments: int
    rows: int
    dropped_tombstones: int
    indexed: bool
    trained: Optional[Dict]
    seconds: float


def _level(rows: int) -> int:
    """floor(log_8 rows), in integers (0 for 0 or 1 row)."""
    return (max(rows, 1).bit_length() - 1) // MERGE_FACTOR_BITS


def _group_to_merge(segments: Sequence[LoadedSegment]) -> List[LoadedSegment]:
    """The segments of the lowest level holding ``MERGE_FACTOR`` of them (empty when none does)."""
    levels: Dict[int, List[LoadedSegment]] = {}
    for s in segments:
        levels.setdefault(_level(s.live), []).append(s)
    for level in sorted(levels):
        if len(levels[level]) >= MERGE_FACTOR:
            return levels[level]
    return []


def _unindexed(segments: Sequence[LoadedSegment]) -> List[LoadedSegment]:
    """Segments searched exactly though large enough for the category's trained index."""
    return [s for s in segments if s.exact and s.live >= indexing.INDEX_MIN_ROWS]


def _live(segments: Sequence[LoadedSegment]):
    """(photo ids ascending, their vectors in the storage dtype, the dropped ids) of the segments' live rows."""
    segments = sorted(segments, key=lambda s: int(s.ids[0]) if len(s.ids) else 0)   # usually ascending already
    parts = [(s.ids, s.vectors) if s.dead is None else (s.ids[~s.dead], s.vectors[~s.dead]) for s in segments]
    ids = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
    vectors = np.concatenate([np.asarray(p[1]) for p in parts]) if parts else None
    if len(ids) > 1 and not (np.diff(ids) > 0).all():   # (a copy of every vector only where it is needed)
        order = np.argsort(ids, kind="stable")
        ids, vectors = ids[order], vectors[order]
    dropped = np.concatenate([s.ids[s.dead] for s in segments if s.dead is not None] or [np.zeros(0, np.int64)])
    return ids, vectors, dropped


def _training(ap: Applier, category: str, ids: np.ndarray, vectors: np.ndarray, category_rows: int,
              full: bool, retrain: bool):
    """(trained empty index or None, the filled index when it was built while tuning, a new training record
    or None, search params): the category's training, (re)trained here when the policy says so."""
    old = db.training_of(ap.conn, category)
    factory = indexing.needs_training(ap.index_factory, category_rows, old) if full else None
    if full and retrain and factory is None:
        factory = indexing.factory_for(ap.index_factory, category_rows)
    if factory is not None and len(ids):
        trained, filled, record = indexing.trained_index(factory, ap.dim, ids, vectors)
        record["file"] = f"{new_name('trained')}.faiss"
        with atomic_path(ap.layout.segment_dir(category) / record["file"]) as tmp:
            faiss.write_index(trained, str(tmp))
        return trained, filled, record, record["params"]
    if old is None or indexing.factory_for(ap.index_factory, category_rows) is None:
        return None, None, None, None
    return faiss.read_index(str(ap.layout.segment_dir(category) / old["file"])), None, None, old["params"]


def merge(ap: Applier, category: str, segments: Sequence[LoadedSegment], *, full: bool,
          retrain: bool = False, category_rows: Optional[int] = None) -> MergeReport:
    """The live rows of ``segments`` as one segment (see the module docstring)."""
    started = time.perf_counter()
    ids, vectors, dropped = _live(segments)
    rows = len(ids) if category_rows is None else category_rows
    trained, filled, record, params = _training(ap, category, ids, vectors, rows, full, retrain)
    index = None
    if trained is not None and len(ids) >= indexing.INDEX_MIN_ROWS:
        index = filled if filled is not None else indexing.fill(trained, vectors)
    name = new_name("merge")
    if len(ids):
        write_segment(ap.layout.segment_dir(category), name, ids, vectors, ap.dtype, index)
    maybe_die("compact:segment-written")
    old_training = db.training_of(ap.conn, category)
    with transaction(ap.conn) as conn:
        if len(ids):
            db.register_segment(conn, category, name, len(ids), params if index is not None else None,
                                record["file"] if record else None)
        db.unregister_segments(conn, category, [s.name for s in segments])
        db.drop_tombstones(conn, dropped)
        if record is not None:
            db.set_training(conn, category, record)
        bump_generations(conn, [category])
    maybe_die("compact:committed")
    for s in segments:
        delete_segment(ap.layout.segment_dir(category), s.name)
    if record is not None and old_training is not None:
        (ap.layout.segment_dir(category) / old_training["file"]).unlink(missing_ok=True)
    return MergeReport(category, len(segments), len(ids), len(dropped), index is not None, record,
                       round(time.perf_counter() - started, 3))


def maintain(ap: Applier, categories) -> List[Dict]:
    """The merges the policy asks for in these categories, after a change (see the module docstring); on
    Milvus, which merges its own segments, the switch of an ``auto`` index."""
    if ap.milvus is not None:
        return maintain_collection(ap, sorted(categories))
    reports = []
    for category in sorted(categories):
        segments = load_category(ap.layout, ap.conn, category)
        held, live = sum(len(s) for s in segments), sum(s.live for s in segments)
        training = db.training_of(ap.conn, category)
        if indexing.needs_training(ap.index_factory, live, training) or held - live > DEAD_SHARE * held:
            reports.append(merge(ap, category, segments, full=True))
            continue
        unindexed = _unindexed(segments)
        if unindexed and training is not None and indexing.factory_for(ap.index_factory, live) is not None:
            for s in unindexed:   # a large add in a trained category: indexed now (costs what it added)
                reports.append(merge(ap, category, [s], full=False, category_rows=live))
            segments = load_category(ap.layout, ap.conn, category)
        group = _group_to_merge(segments)
        while group:
            reports.append(merge(ap, category, group, full=False, category_rows=live))
            segments = load_category(ap.layout, ap.conn, category)
            group = _group_to_merge(segments)
    return [asdict(r) for r in reports]


def compact(ap: Applier, categories: Optional[Sequence[str]] = None, retrain: bool = False) -> List[Dict]:
    """Each category (all of them by default) as one segment, tombstones dropped, trained by the policy
    (or again, with ``retrain``). On Milvus: its compaction asked for, the recall measured and the search
    tuned again."""
    if ap.milvus is not None:
        known = sorted(db.counts_by_category(ap.conn))
        return maintain_collection(ap, known if categories is None else [c for c in known if c in set(categories)],
                                   retune=True)
    known = sorted({r["category"] for r in db.segments(ap.conn)})
    reports = []
    for category in known if categories is None else [c for c in known if c in set(categories)]:
        segments = load_category(ap.layout, ap.conn, category)
        live = sum(s.live for s in segments)
        approximate = indexing.factory_for(ap.index_factory, live) is not None
        unindexed = approximate and bool(_unindexed(segments))
        if len(segments) > 1 or any(s.dead is not None for s in segments) or retrain or unindexed or \
                indexing.needs_training(ap.index_factory, live, db.training_of(ap.conn, category)):
            reports.append(asdict(merge(ap, category, segments, full=True, retrain=retrain)))
    return reports
