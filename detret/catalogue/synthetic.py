"""A catalogue's vector store without models: the database and the segments (or the Milvus collection), changed through the real change
protocol (``changes.py``) and maintained by the real policy (``compact.py``), for the scale benchmark
(``tools/benchmark.py catalogue-scale``) and the store's tests. Photos are rows only (no stored file)."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

from . import db
from .changes import Applier, NewPhoto, begin_add, finish_add_or_roll_back, remove
from .compact import maintain
from .indexing import check_setting
from .layout import CatalogueLayout
from .milvus import MilvusStore, MilvusVectors, VectorsSpec, check_index, read_state, vectors_meta
from .vectors import CatalogueVectors


class VectorStore:
    """The vector store of a catalogue folder ``root`` (created when missing) with index setting ``index``."""

    def __init__(self, root: Path, dim: int, index: str = "Flat", vectors: str = "faiss") -> None:
        self.layout = CatalogueLayout(root)
        self.layout.root.mkdir(parents=True, exist_ok=True)
        self.conn = db.connect(self.layout.db, create=True)
        spec = VectorsSpec.parse(vectors)
        check_index(index) if spec.is_milvus else check_setting(index, dim)
        meta = db.get_meta(self.conn)
        if "vectors" not in meta:   # a new store (else reopened)
            meta = {"schema_version": str(db.SCHEMA_VERSION), "dim": str(dim),
                    **vectors_meta(spec, self.layout.root, dim, index)}
            db.set_meta(self.conn, meta)
        self.milvus = None
        if spec.is_milvus:
            self.milvus = MilvusStore(spec.resolved_uri(self.layout.root), meta["milvus_collection"], dim, index)
            self.milvus.state = read_state(meta)
        self.applier = Applier(self.conn, self.layout, index, dim, self.milvus)

    def add(self, categories: Sequence[str], vectors: np.ndarray, maintenance: bool = True) -> Dict:
        """One add of one photo per vector (product ``p<photo>``); {"change_id", "photo_ids", "maintenance"}."""
        first = db.next_photo_id(self.conn)
        photos = [NewPhoto(f"p{first + i}", c, f"{first + i:064x}", f"photos/{first + i}.jpg", None, 1, 1, None,
                           "full") for i, c in enumerate(categories)]
        change = begin_add(self.applier, photos, vectors)
        finish_add_or_roll_back(self.applier, change)
        by_category = db.photo_ids_of_change(self.conn, change)
        done = maintain(self.applier, set(categories)) if maintenance else []
        return {"change_id": change, "photo_ids": by_category, "maintenance": done}

    def remove(self, photo_ids: Sequence[int], maintenance: bool = True) -> List[Dict]:
        change = remove(self.applier, "photo_id", [int(i) for i in photo_ids])
        if change is None or not maintenance:
            return []
        return maintain(self.applier, db.change_of(self.conn, change)[2]["photo_ids"])

    def reader(self):
        """A reader as a server holds it, up to date (on Milvus, it shares this store's client)."""
        vectors = MilvusVectors(self.milvus) if self.milvus is not None else CatalogueVectors(self.layout)
        vectors.refresh(db.connect(self.layout.db))
        return vectors

    def close(self) -> None:
        if self.milvus is not None:
            self.milvus.close()
        self.conn.close()
