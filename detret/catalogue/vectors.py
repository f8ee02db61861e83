"""The catalogue's FAISS indexes: one ``IndexIDMap2`` per category, ids = the database's photo ids.

``IndexIDMap2`` keeps the id of every vector, so a photo is removed by its id and its vector can
be read back (``reconstruct``) to check a change. The wrapped index is any FAISS factory string
that needs no training and supports removal (``Flat``, the exact search of the paper, is the
default; ``SQfp16`` halves the memory). Index files are written beside their target and renamed
(``runs/atomic.py``), so a reader opens either the old file or the new one.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence, Tuple

import numpy as np

from ..errors import InputError
from ..runs.atomic import atomic_path
from ..search.faiss_lib import faiss
from ..search.index import search


def new_index(factory: str, dim: int) -> faiss.Index:
    """An empty inner-product index with ids; refuses factories that need training or cannot remove."""
    try:
        index = faiss.index_factory(int(dim), f"IDMap2,{factory}", faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise InputError(f"--index {factory!r}: FAISS cannot build it for dimension {dim} ({exc})") from exc
    if not index.is_trained:
        raise InputError(f"--index {factory!r} needs training data; a catalogue that grows by adds needs an "
                         "index that does not (Flat, SQfp16)")
    probe = faiss.index_factory(int(dim), f"IDMap2,{factory}", faiss.METRIC_INNER_PRODUCT)
    probe.add_with_ids(np.zeros((1, dim), np.float32), np.array([1], np.int64))
    try:
        probe.remove_ids(np.array([1], np.int64))
    except RuntimeError:
        raise InputError(f"--index {factory!r} cannot remove vectors (needed by `catalogue remove`); "
                         "use Flat or SQfp16") from None
    return index


def read_index(path: Path, factory: str, dim: int) -> faiss.Index:
    """The index saved at ``path``, or a new empty one when there is none yet."""
    if not Path(path).is_file():
        return new_index(factory, dim)
    return faiss.read_index(str(path))


def write_index(index: faiss.Index, path: Path) -> None:
    with atomic_path(path) as tmp:
        faiss.write_index(index, str(tmp))


def replace_vectors(index: faiss.Index, ids: Sequence[int], vectors: np.ndarray) -> None:
    """Add ``vectors`` [n, D] under ``ids``, replacing any already there (so applying twice is applying once)."""
    ids_arr = np.asarray(ids, np.int64)
    index.remove_ids(ids_arr)
    if len(ids_arr):
        index.add_with_ids(np.ascontiguousarray(vectors, np.float32), ids_arr)


def index_ids(index: faiss.Index) -> np.ndarray:
    """The ids an ``IndexIDMap2`` holds."""
    return faiss.vector_to_array(index.id_map).astype(np.int64)


def nearest(index: faiss.Index, queries: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
    """(scores [Q, k], photo ids [Q, k]; -1 past the end), ties by photo id as the batch search orders them."""
    return search(index, queries, k)
