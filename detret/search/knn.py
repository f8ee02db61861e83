"""Exact k nearest neighbours by inner product, chunked so memory stays [chunk, k], never [N, M].

Ordered by (score descending, row ascending), as every ranking in detret (:func:`detret.search.index.search`).
The products are :func:`detret.search.exact.top_k`'s, on ``base`` itself (no copy into an index).
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

from .exact import top_k

CHUNK_ROWS = 4096


def knn(base: np.ndarray, queries: np.ndarray, k: int, chunk: int = CHUNK_ROWS) -> Tuple[np.ndarray, np.ndarray]:
    """(scores float32 [Q, k], rows int64 [Q, k]) of the ``k`` rows of ``base`` [M, D] nearest each query;
    k is capped at M (no -1 padding)."""
    k = min(k, len(base))
    scores = np.empty((len(queries), k), np.float32)
    rows = np.empty((len(queries), k), np.int64)
    for start in range(0, len(queries), chunk):
        scores[start:start + chunk], rows[start:start + chunk] = top_k(base, queries[start:start + chunk], k)
    return scores, rows


def self_first_knn(base: np.ndarray, k: int, chunk: int = CHUNK_ROWS, start: int = 0, stop: int = -1
                   ) -> Tuple[np.ndarray, np.ndarray]:
    """For base rows ``start:stop``: (scores, rows) [n, 1 + min(k, M - 1)]: the row itself first, then its k
    nearest other rows (itself is not always its own first neighbour: a duplicate can tie with it)."""
    stop = len(base) if stop < 0 else stop
    k = min(k, len(base) - 1)
    scores, rows = knn(base, base[start:stop], k + 1, chunk)
    own = np.arange(start, stop)[:, None]
    others = rows != own
    # stable: the others keep their order; a row whose own index fell outside its k + 1 drops its last neighbour
    order = np.argsort(~others, axis=1, kind="stable")[:, :k]
    other_rows = np.take_along_axis(rows, order, axis=1)
    other_scores = np.take_along_axis(scores, order, axis=1)
    self_scores = np.einsum("nd,nd->n", base[start:stop], base[start:stop]).astype(np.float32)[:, None]
    return np.hstack([self_scores, other_scores]), np.hstack([own, other_rows])
