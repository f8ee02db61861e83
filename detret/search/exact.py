"""Exact top-k by inner product as one matrix product per chunk, on NumPy's BLAS.

Why NumPy's and not FAISS's: an exact FAISS search is an ``sgemm`` on the OpenBLAS its wheel bundles
(0.3.15, see ``faiss_lib.py``), several releases older than NumPy's (0.3.2x-0.3.3x). On an AMD EPYC with
AVX-512 (bf16, VNNI) FAISS's ``IndexFlatIP`` ran at 0.57x NumPy's matmul + argpartition on the same data,
0.96-1.06x on the Intel CPUs measured before: NumPy's product is never the slower one, so every exact path
of detret (the batch ``search`` stage, ``query``, the catalogue's exact segments, re-scoring, recall
measurements) computes its scores here. ``tools/benchmark.py search`` measures both on the machine at hand.

Rows of ``base`` may be float16 (a compressed catalogue): each chunk is converted to float32 before the
product, so scores are the float32 inner products of the stored (rounded) vectors.

Ties: results are ordered by (score descending, row ascending), the order of every ranking in detret.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

SCORES_BLOCK = 2 ** 24  # scores computed at once, [Q, chunk] (64 MiB, and 128 MiB of argpartition's indices)
MIN_CHUNK_ROWS = 1024   # base rows per product at least (a GEMM, not a row-by-row loop, for large Q)
TIE_MARGIN = 8          # candidates kept past k so that equal scores are ordered by row


def top_k(base: np.ndarray, queries: np.ndarray, k: int, dead_rows: Optional[np.ndarray] = None,
          chunk_rows: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
    """(scores float32 [Q, k], rows int64 [Q, k]) of the ``k`` rows of ``base`` [N, D] with the largest inner
    product with each query [Q, D]; rows where ``dead_rows`` (bool [N]) is True are never returned; -inf / -1
    past the end. Memory stays [Q, chunk_rows] (default: ``SCORES_BLOCK`` scores at a time)."""
    q = np.ascontiguousarray(queries, np.float32)
    chunk_rows = chunk_rows or max(MIN_CHUNK_ROWS, SCORES_BLOCK // max(1, len(q)))
    scores_out = np.full((len(q), k), -np.inf, np.float32)
    rows_out = np.full((len(q), k), -1, np.int64)
    if len(base) == 0 or len(q) == 0 or k <= 0:
        return scores_out, rows_out
    keep = min(k + TIE_MARGIN, len(base))
    best_s = np.full((len(q), 0), -np.inf, np.float32)
    best_r = np.zeros((len(q), 0), np.int64)
    for start in range(0, len(base), chunk_rows):
        chunk = np.asarray(base[start:start + chunk_rows], np.float32)
        s = q @ chunk.T                                         # [Q, chunk]
        if dead_rows is not None:
            s[:, dead_rows[start:start + len(chunk)]] = -np.inf
        take = min(keep, s.shape[1])
        part = np.argpartition(-s, take - 1, axis=1)[:, :take] if take < s.shape[1] else \
            np.broadcast_to(np.arange(s.shape[1]), s.shape)
        best_s = np.hstack([best_s, np.take_along_axis(s, part, axis=1)])
        best_r = np.hstack([best_r, part + start])
        if best_s.shape[1] > keep:
            cut = np.argpartition(-best_s, keep - 1, axis=1)[:, :keep]
            best_s, best_r = np.take_along_axis(best_s, cut, axis=1), np.take_along_axis(best_r, cut, axis=1)
    return _ordered(best_s, best_r, scores_out, rows_out)


def _ordered(cand_s: np.ndarray, cand_r: np.ndarray, scores_out: np.ndarray, rows_out: np.ndarray
             ) -> Tuple[np.ndarray, np.ndarray]:
    """The candidates sorted by (score descending, row ascending), -inf ones dropped, into the outputs."""
    k = scores_out.shape[1]
    for i in range(len(cand_s)):
        valid = np.isfinite(cand_s[i])
        s, r = cand_s[i][valid], cand_r[i][valid]
        order = np.lexsort((r, -s))[:k]
        scores_out[i, :len(order)] = s[order]
        rows_out[i, :len(order)] = r[order]
    return scores_out, rows_out


def merge_top_k(scores: np.ndarray, ids: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
    """The best ``k`` of candidate lists [Q, C] (several segments' results side by side; id -1 = none),
    ordered by (score descending, id ascending)."""
    s = np.where(ids >= 0, scores, -np.inf).astype(np.float32)
    return _ordered(s, ids.astype(np.int64), np.full((len(s), k), -np.inf, np.float32),
                    np.full((len(s), k), -1, np.int64))
