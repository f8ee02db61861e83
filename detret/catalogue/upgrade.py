"""A catalogue of schema 1 (one FAISS ``IndexIDMap2`` file per category, rewritten whole by every change)
converted to segments (schema 2), keeping every descriptor.

The first writer that opens such a catalogue converts it (``Catalogue.writing``; ``detret catalogue compact
DIR`` is the command made for it); readers refuse it with a message naming that command. Each
``indexes/<category>.faiss`` becomes one segment ``v1`` of its category holding the vectors of the
category's ``present`` photos, read back from the index (the float32 values of a ``Flat`` index, the
float16 ones of ``SQfp16``); ids of rows not present are left out (a pending add writes its own segment
when it is finished, a removal not yet applied to the file is simply done). Then one transaction
registers the segments and sets the schema version to 2; the old files are deleted after it (by the next
writer, if a kill came between). Killed before that transaction, the catalogue is still of schema 1 and
the next writer converts it again from the start.
"""
from __future__ import annotations

import logging
import sqlite3
from typing import Dict

import numpy as np

from ..runs.atomic import is_temporary
from ..search.faiss_lib import faiss
from . import db
from .db import transaction
from .layout import CatalogueLayout
from .segments import vector_dtype, write_segment

logger = logging.getLogger(__name__)

V1_SEGMENT = "v1"


def _v1_vectors(path) -> tuple:
    """(ids, vectors float32 [n, D]) of a schema-1 index file (``IndexIDMap2`` around a Flat or SQfp16)."""
    index = faiss.read_index(str(path))
    ids = faiss.vector_to_array(index.id_map).astype(np.int64)
    inner = faiss.downcast_index(index.index)
    vectors = inner.reconstruct_n(0, inner.ntotal) if inner.ntotal else np.zeros((0, index.d), np.float32)
    return ids, vectors


def upgrade_v1(layout: CatalogueLayout, conn: sqlite3.Connection, index_factory: str) -> Dict[str, int]:
    """Convert the catalogue (schema 1, its writer's lock held); category -> photos in its new segment."""
    logger.warning("%s: converting a catalogue of schema 1 (one index file per category) to segments",
                   layout.root)
    present = db.present_ids_by_category(conn)
    written: Dict[str, int] = {}
    for path in sorted(layout.indexes_dir.glob("*.faiss")) if layout.indexes_dir.is_dir() else ():
        if is_temporary(path.name):
            continue
        category = path.stem
        ids, vectors = _v1_vectors(path)
        keep = np.isin(ids, np.fromiter(present.get(category, ()), np.int64))
        write_segment(layout.segment_dir(category), V1_SEGMENT, ids[keep], vectors[keep],
                      vector_dtype(index_factory))
        written[category] = int(keep.sum())
    db.add_schema_v2_tables(conn)
    with transaction(conn):
        for category, n in written.items():
            db.register_segment(conn, category, V1_SEGMENT, n)
            db.bump_generation(conn, category)
        db.set_meta(conn, {"schema_version": str(db.SCHEMA_VERSION)})
    return written
