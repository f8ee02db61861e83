"""Per-category FAISS indexes over L2-normalised descriptors (inner product = cosine, eq. 5).

One index per category: a query is only ever compared with the shop photos of
its own category (Kiapour et al.'s protocol), and separate indexes are much
faster than one index filtered per query (an ``IDSelectorBatch`` was measured
23x slower here). ``factory`` is any FAISS index_factory string: "Flat" (exact,
the default), "HNSW32", "IVF1024,SQ8", "PCA256,Flat", ...; indexes that need
training are trained on the category's own descriptors.

Ties: FAISS does not order equal scores; results are re-sorted by (score
descending, gallery row ascending) over ``k + tie_margin`` candidates, the same
order the evaluation uses.

An exact CPU index (``IndexFlat``) is searched by :func:`detret.search.exact.top_k` on its own
stored vectors (no copy): NumPy's BLAS is never slower than the one FAISS's wheel bundles
(see ``exact.py``); approximate and GPU indexes are searched by FAISS.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

from ..errors import InputError
from .exact import top_k
from .faiss_lib import faiss


def build_index(gallery: np.ndarray, factory: str = "Flat") -> faiss.Index:
    """A CPU inner-product index over gallery [M, D] float32 (C-contiguous is enforced here)."""
    x = np.ascontiguousarray(gallery, dtype=np.float32)
    try:
        index = faiss.index_factory(x.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise InputError(f"FAISS cannot build index {factory!r} for dimension {x.shape[1]}: {exc}") from exc
    if not index.is_trained:
        index.train(x)
    index.add(x)
    return index


def for_search(index: faiss.Index, use_gpu: bool) -> faiss.Index:
    """The index to search with: copied to every GPU FAISS sees when asked and possible."""
    if use_gpu and faiss.get_num_gpus() > 0:
        return faiss.index_cpu_to_all_gpus(index)
    return index


def search(index: faiss.Index, queries: np.ndarray, k: int, tie_margin: int = 8) -> Tuple[np.ndarray, np.ndarray]:
    """(scores [Q, k] float32, ids [Q, k] int64; -1 where the gallery has fewer than k items)."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    n = index.ntotal
    fetch = min(n, k + tie_margin)
    scores_out = np.full((q.shape[0], k), -np.inf, np.float32)
    ids_out = np.full((q.shape[0], k), -1, np.int64)
    if n == 0 or q.shape[0] == 0:
        return scores_out, ids_out
    if type(index) is faiss.IndexFlat and index.metric_type == faiss.METRIC_INNER_PRODUCT:
        return top_k(flat_vectors(index), q, k)
    scores, ids = index.search(q, fetch)
    for i in range(q.shape[0]):
        valid = ids[i] >= 0
        s, j = scores[i][valid], ids[i][valid]
        order = np.lexsort((j, -s))[:k]
        scores_out[i, :len(order)] = s[order]
        ids_out[i, :len(order)] = j[order]
    return scores_out, ids_out


def flat_vectors(index: faiss.IndexFlat) -> np.ndarray:
    """The vectors [N, D] float32 an ``IndexFlat`` holds, as a view of its memory (valid while it lives)."""
    if index.ntotal == 0:
        return np.zeros((0, index.d), np.float32)
    return faiss.rev_swig_ptr(index.get_xb(), index.ntotal * index.d).reshape(index.ntotal, index.d)
