"""An open catalogue: its folders, its model card and its database; readers and the one writer.

- :meth:`Catalogue.open` for reading (``info``, the service): no lock; sees ``present`` rows only.
- :meth:`Catalogue.writing` for changing (``add``, ``remove``): takes the writers' lock, then
  finishes whatever a killed writer left (``changes.reconcile``) before anything else.
"""
from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path
from typing import Dict, Iterator, Optional

from ..errors import InputError, MissingFileError
from . import db
from .binding import ModelCard, ModelMismatch, read_card, rebuild_hint
from .changes import Applier, reconcile
from .layout import CatalogueLayout
from .lock import WriterLock
from .milvus import MilvusStore, MilvusVectors, VectorsSpec, read_state
from .upgrade import upgrade_v1
from .vectors import CatalogueVectors


_OPEN_TRIES = 5   # a reindex swapping the folder during open is rare; five in a row is not a race


class Catalogue:
    def __init__(self, root: Path, conn: sqlite3.Connection, card: ModelCard, db_inode: Optional[int] = None) -> None:
        self.root, self.conn, self.card = Path(root), conn, card
        self.layout = CatalogueLayout(root)
        self.db_inode = db_inode    # which database file ``conn`` opened (a reindex replaces the file)
        self.reconciled: list = []   # changes a killed writer left, finished when this writer opened it
        meta = db.get_meta(conn)
        self.vectors_spec = VectorsSpec.parse(meta.get("vectors", "faiss"))
        self._milvus: Optional[MilvusStore] = None
        self._milvus_collection = meta.get("milvus_collection")
        self.closed = False

    @property
    def milvus(self) -> Optional[MilvusStore]:
        """The catalogue's Milvus collection (connected on first use), or None for segment files."""
        if self.vectors_spec.is_milvus and self._milvus is None:
            self._milvus = MilvusStore(self.vectors_spec.resolved_uri(self.root), str(self._milvus_collection),
                                       self.card.dim, self.card.index_factory)
            self._milvus.state = read_state(db.get_meta(self.conn))
        return self._milvus

    def reader(self, searchable: bool = True):
        """What a reader searches and reads vectors through, up to date (``CatalogueVectors`` over the
        segment files, or ``MilvusVectors``)."""
        vectors = MilvusVectors(self.milvus) if self.vectors_spec.is_milvus else CatalogueVectors(self.layout,
                                                                                                 searchable)
        vectors.refresh(self.conn)
        return vectors

    @classmethod
    def open(cls, root: Path, *, older_schema: bool = False) -> "Catalogue":
        """The catalogue for reading; ``older_schema``: also one of schema 1 (for the writer that converts
        it, ``upgrade.py``)."""
        layout = CatalogueLayout(root)
        if not layout.root.is_dir():
            raise MissingFileError(f"{root}: no such catalogue; create it with "
                                   "`detret --config RUN.yaml catalogue create DIR --run NAME`")
        for attempt in range(_OPEN_TRIES):
            card = read_card(root)
            if not layout.db.is_file():
                raise MissingFileError(f"{layout.db}: the catalogue's database is missing")
            inode = layout.db.stat().st_ino      # before connecting: the file opened is this one, or a newer one
            conn = db.connect(layout.db)
            meta = db.get_meta(conn)
            if layout.db.stat().st_ino == inode or attempt == _OPEN_TRIES - 1:  # no reindex swapped it meanwhile
                break
            conn.close()  # the card and the database may come from either side of the swap: read both again
        version = meta.get("schema_version")
        if version == "1" and not older_schema:
            conn.close()
            raise InputError(f"{layout.db}: a catalogue of schema 1 (one index file per category), made by an "
                             f"earlier detret; `detret catalogue compact {root}` converts it to segments, keeping "
                             "every descriptor (any writer does it on its first run)")
        if version not in (str(db.SCHEMA_VERSION), "1"):
            conn.close()
            raise InputError(f"{layout.db}: schema version {version}, this detret reads {db.SCHEMA_VERSION} "
                             "(and converts 1)")
        if meta.get("identity") != card.identity:
            conn.close()
            raise ModelMismatch(f"{layout.model}: model {card.identity[:12]} is not the model "
                                f"{str(meta.get('identity'))[:12]} the catalogue's descriptors were computed with; "
                                f"{rebuild_hint(root)}")
        return cls(root, conn, card, inode)

    @classmethod
    @contextlib.contextmanager
    def writing(cls, root: Path, holder: str) -> Iterator["Catalogue"]:
        """The catalogue opened by its one writer, with interrupted changes finished."""
        if not CatalogueLayout(root).is_catalogue():
            cls.open(root).close()  # raises the reader's error for a missing or broken catalogue
        with WriterLock(CatalogueLayout(root).lock, holder):
            cat = cls.open(root, older_schema=True)
            try:
                if db.get_meta(cat.conn).get("schema_version") == "1":
                    upgrade_v1(cat.layout, cat.conn, cat.card.index_factory)
                cat.reconciled = reconcile(cat.applier)
                yield cat
            finally:
                cat.close()

    @property
    def applier(self) -> Applier:
        return Applier(self.conn, self.layout, self.card.index_factory, self.card.dim, self.milvus)

    def close_vectors(self) -> None:
        """Disconnect from Milvus (a Milvus Lite folder is released once no one in this process uses it)."""
        if self._milvus is not None:
            self._milvus.close()
            self._milvus = None

    def close(self) -> None:
        self.close_vectors()
        self.conn.close()
        self.closed = True

    def summary(self, with_size: bool = True) -> Dict:
        """What ``catalogue info`` and ``GET /api/catalogue`` show; ``with_size``: walk the folder for its
        size on disk (one stat per stored photo: the service leaves it out)."""
        per_category = db.counts_by_category(self.conn)
        last = db.last_done_change(self.conn)
        unfinished = len(db.unfinished_changes(self.conn))
        return {
            "catalogue": str(self.root),
            "products": db.product_count(self.conn),
            "photos": sum(c["photos"] for c in per_category.values()),
            "categories": per_category,
            "crop_rules": db.rule_counts(self.conn),
            "model": {"identity": self.card.identity, "run": self.card.run, "dim": self.card.dim,
                      "crop_policy": self.card.crop["policy"], "objectness_thresh": self.card.crop["objectness_thresh"]},
            "index": {"factory": self.card.index_factory, "generations": db.generations(self.conn),
                      "vectors": str(self.vectors_spec), "categories": self._index_states()},
            "last_change": last,
            "unfinished_changes": unfinished,
            "size_on_disk_bytes": disk_usage(self.root) if with_size else None,
        }


    def _index_states(self) -> Dict[str, Dict]:
        if not self.vectors_spec.is_milvus:
            return index_states(self.conn)
        state = read_state(db.get_meta(self.conn))
        return {c: {"index": f"milvus {state.get('index')}", "segments": 0, "rows": n["photos"],
                    "indexed_rows": n["photos"], "tombstones": 0, "trained_on": state.get("measured_on"),
                    "recall_at_20": state.get("recall_at_20"), "params": state.get("search", {})}
                for c, n in db.counts_by_category(self.conn).items()}


def index_states(conn: sqlite3.Connection) -> Dict[str, Dict]:
    """Per category: its index (exact, or the trained factory), segments, rows, tombstones, and the recall@20
    measured when it was trained."""
    trained = db.trainings(conn)
    out = {}
    for category, counts in db.segment_counts(conn).items():
        t = trained.get(category)
        out[category] = {"index": t["factory"] if t and counts["indexed_rows"] else "exact", **counts,
                         "trained_on": t and t["trained_on"], "recall_at_20": t and t["recall_at_20"],
                         "params": t["params"] if t else {}}
    return out


def disk_usage(root: Path) -> int:
    total = 0
    for folder, _, files in os.walk(root):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(folder, f)).st_size
    return total

