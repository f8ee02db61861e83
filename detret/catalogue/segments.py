"""A category's vectors as immutable segments; what a reader loads and searches.

Files of one segment, in ``indexes/<category>/`` (written beside their target and renamed, then registered
in the database's ``segments`` table in the transaction that makes them visible; a file no row registers is
invisible and deleted by the next writer):

- ``<name>.ids.npy``: int64 [n], the photo ids, ascending;
- ``<name>.vectors.npy``: float32 or float16 [n, D], the L2-normalised descriptors, row i of photo ids[i]
  (float16 where the catalogue's index is not ``Flat``: half the disk, scores to about 1e-3);
- ``<name>.faiss`` (indexed segments only): a FAISS index over the same rows (FAISS ids = row numbers),
  built from the category's trained index (``indexing.py``); its hits are re-scored exactly from the vectors.

A segment without an index file is searched exactly: float32 rows by NumPy's GEMM (``search/exact.py``),
float16 rows by FAISS's scan of them (:func:`fp16_flat`, built when the segment is loaded).

Names: ``add-<change>`` (the vectors of one add), ``merge-<ns>`` (a merge or a compaction), ``repair-<ns>``.
A removal writes no file: the removed photo ids are *tombstones* (a database table), and a reader marks
their rows dead in the segments it holds; a compaction later drops them (``compact.py``).

A reader (:class:`CatalogueVectors`) keeps the segments it loaded, memory-mapped, and at each refresh loads
only the segments registered since and the tombstones written since: a change costs a server what it
changed, never a whole index.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from ..runs.atomic import atomic_path
from ..search.exact import TIE_MARGIN, merge_top_k, top_k
from ..search.faiss_lib import faiss

SUFFIXES = (".ids.npy", ".vectors.npy", ".faiss")
RESCORE_FACTOR = 4          # an indexed segment returns 4k candidates (at least k + 32), re-scored exactly
                            # (more where its training's tuning asked for more: params["rescore"])
RESCORE_BLOCK = 2 ** 24     # floats gathered for re-scoring at once (64 MiB)


def vector_dtype(index_factory: str) -> np.dtype:
    """float32 for the exact ``Flat`` catalogue (scores as the batch search computes them), float16 otherwise."""
    return np.dtype(np.float32) if index_factory == "Flat" else np.dtype(np.float16)


def segment_name(path: Path) -> Optional[str]:
    """The segment a file of ``indexes/<category>/`` belongs to, or None for another file."""
    for suffix in SUFFIXES:
        if path.name.endswith(suffix):
            return path.name[:-len(suffix)]
    return None


def new_name(prefix: str) -> str:
    return f"{prefix}-{time.time_ns()}"


def write_segment(folder: Path, name: str, ids: np.ndarray, vectors: np.ndarray, dtype: np.dtype,
                  index: Optional[faiss.Index] = None) -> None:
    """The files of segment ``name`` (rows sorted by photo id), each renamed into place."""
    order = np.argsort(ids, kind="stable")
    with atomic_path(folder / f"{name}.vectors.npy") as tmp:
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(vectors[order], dtype))
    if index is not None:
        with atomic_path(folder / f"{name}.faiss") as tmp:
            faiss.write_index(index, str(tmp))
    with atomic_path(folder / f"{name}.ids.npy") as tmp:
        with open(tmp, "wb") as f:
            np.save(f, np.asarray(ids, np.int64)[order])


def delete_segment(folder: Path, name: str) -> None:
    for suffix in SUFFIXES:
        (folder / f"{name}{suffix}").unlink(missing_ok=True)


@dataclass
class LoadedSegment:
    """One segment as a reader holds it: ids and vectors memory-mapped, its index in memory."""

    name: str
    ids: np.ndarray = field(repr=False)                    # int64 [n], ascending
    vectors: np.ndarray = field(repr=False)                # float32 / float16 [n, D], memory-mapped
    index: Optional[faiss.Index] = field(default=None, repr=False)
    params: Dict = field(default_factory=dict)
    dead: Optional[np.ndarray] = field(default=None, repr=False)   # bool [n]: rows of removed photos
    fp16_scan: bool = False                                # ``index`` is the exact scan of float16 rows
    _dead_count: int = field(default=0, repr=False)
    _selector: Tuple = field(default=(), repr=False)       # FAISS selector excluding dead rows (+ what it holds)

    @classmethod
    def load(cls, folder: Path, name: str, params: Optional[Dict] = None, searchable: bool = True
             ) -> "LoadedSegment":
        """The segment's files; ``searchable``: also the exact index of float16 rows (readers; the writer's
        merges read rows only)."""
        ids = np.load(folder / f"{name}.ids.npy", mmap_mode="r")
        vectors = np.load(folder / f"{name}.vectors.npy", mmap_mode="r")
        if vectors.ndim != 2 or len(vectors) != len(ids):
            raise ValueError(f"{folder / name}: {len(ids)} ids for vectors of shape {vectors.shape}")
        path = folder / f"{name}.faiss"
        index, scan = None, False
        if path.is_file():
            index = faiss.read_index(str(path))
        elif vectors.dtype == np.float16 and searchable:   # read apart from the map: its pages would stay
            index, scan = fp16_flat(np.load(folder / f"{name}.vectors.npy")), True   # resident beside the copy
        return cls(name, np.asarray(ids), vectors, index, dict(params or {}), fp16_scan=scan)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def live(self) -> int:
        """Rows not removed."""
        return len(self.ids) - self._dead_count

    def kill(self, photo_ids: np.ndarray) -> None:
        """Mark the rows of these photo ids dead (ids of other segments are ignored)."""
        rows = np.searchsorted(self.ids, photo_ids)
        hit = rows < len(self.ids)
        hit[hit] = self.ids[rows[hit]] == photo_ids[hit]
        if hit.any():
            if self.dead is None:
                self.dead = np.zeros(len(self.ids), bool)
            self.dead[rows[hit]] = True
            self._dead_count = int(self.dead.sum())
            self._selector = ()

    def vector(self, photo_id: int) -> Optional[np.ndarray]:
        """The stored vector of a photo (float32), or None when this segment does not hold it or it was removed."""
        row = int(np.searchsorted(self.ids, photo_id))
        if row < len(self.ids) and self.ids[row] == photo_id and (self.dead is None or not self.dead[row]):
            return np.asarray(self.vectors[row], np.float32)
        return None

    @property
    def exact(self) -> bool:
        """Searched exactly (float32 by NumPy's GEMM, float16 by FAISS's scan of the codes), not re-scored."""
        return self.index is None or self.fp16_scan

    def search(self, queries: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
        """(scores [Q, k'], photo ids [Q, k']; -1 = none): exact scores, dead rows never returned."""
        if self.index is None:
            scores, rows = top_k(self.vectors, queries, k, self.dead)
        elif self.exact:
            scores, rows = self.index.search(np.ascontiguousarray(queries, np.float32), min(len(self), k + TIE_MARGIN),
                                             params=self._params(k))
            scores, rows = merge_top_k(scores, rows, k + TIE_MARGIN)
        else:
            scores, rows = self._rescored(queries, k)
        return scores, np.where(rows >= 0, self.ids[np.clip(rows, 0, None)], -1)

    def _rescored(self, queries: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
        fetch = min(len(self.ids), max(int(self.params.get("rescore", RESCORE_FACTOR)) * k, k + 32))
        q = np.ascontiguousarray(queries, np.float32)
        _, rows = self.index.search(q, fetch, params=self._params(fetch))
        exact = np.empty(rows.shape, np.float32)
        step = max(1, RESCORE_BLOCK // (fetch * q.shape[1]))   # queries re-scored at once: [step, fetch, D] floats
        for start in range(0, len(q), step):
            block = np.clip(rows[start:start + step], 0, None)
            wanted = np.unique(block)                           # sorted: the stored rows read in order
            gathered = np.asarray(self.vectors[wanted], np.float32)[np.searchsorted(wanted, block)]
            exact[start:start + step] = np.einsum("qcd,qd->qc", gathered, q[start:start + step])
        return merge_top_k(exact, rows, k + TIE_MARGIN)

    def _params(self, fetch: int):
        """Search parameters: the tuned nprobe / efSearch, and a selector excluding dead rows."""
        if self.dead is not None and not self._selector:
            batch = faiss.IDSelectorBatch(np.flatnonzero(self.dead).astype(np.int64))
            self._selector = (faiss.IDSelectorNot(batch), batch)
        sel = self._selector[0] if self._selector else None
        ivf = faiss.try_extract_index_ivf(self.index)
        if ivf is not None:
            return faiss.SearchParametersIVF(sel=sel, nprobe=int(self.params.get("nprobe", ivf.nprobe)))
        if isinstance(self.index, faiss.IndexHNSW):
            ef = max(int(self.params.get("efSearch", self.index.hnsw.efSearch)), fetch)
            return faiss.SearchParametersHNSW(sel=sel, efSearch=ef)
        return faiss.SearchParameters(sel=sel) if sel is not None else None


def fp16_flat(vectors: np.ndarray) -> faiss.IndexScalarQuantizer:
    """An exact index over float16 vectors [n, D] (FAISS's fp16 scalar quantizer: its codes are the float16
    values themselves, decoded to float32 in SIMD registers while scanning). Why not NumPy: NumPy has no
    float16 matrix product, and converting the rows to float32 for every query was measured 15x slower
    (19,000 x 2048: 104 ms against 7 ms)."""
    n, dim = vectors.shape
    index = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
    faiss.copy_array_to_vector(np.ascontiguousarray(vectors, np.float16).view(np.uint8).ravel(), index.codes)
    index.ntotal = n
    return index


def search_segments(segments: Sequence[LoadedSegment], queries: np.ndarray, k: int
                    ) -> Tuple[np.ndarray, np.ndarray]:
    """(scores [Q, k], photo ids [Q, k]) over several segments, ordered by (score desc, photo id asc)."""
    found = [s.search(queries, k) for s in segments if s.live]
    if not found:
        return np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1, np.int64)
    return merge_top_k(np.hstack([f[0] for f in found]), np.hstack([f[1] for f in found]), k)

