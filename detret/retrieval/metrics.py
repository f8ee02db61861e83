"""Retrieval metrics of Kucer & Murray (eq. 4 and 6), as plain functions (used by training's validation
and by evaluation).

Ranking convention (the same as `detret search`): higher score first; equal
scores are ordered by gallery index, so every metric is deterministic.

- ``average_precision(relevance, n_positives)``: eq. 4,
  AP = (1/|S+|) sum_k 1[r_k in S+] Prec@k, over a ranked 0/1 vector. Positives
  missing from `relevance` (a truncated ranking) count as never retrieved.
- ``accuracy_at_k(relevance, k)``: eq. 6 for one query, 1 if a match is in the top k.
- ``full_gallery_ap(scores, positives)``: the AP of one query over the whole
  gallery from its scores, without sorting the gallery: the rank of each
  positive is 1 + the number of items ranked before it (higher score, or equal
  score and lower index). O(P x M) for P positives instead of O(M log M).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def average_precision(relevance: Sequence[int], n_positives: int) -> float:
    rel = np.asarray(relevance, dtype=np.float64)
    if n_positives <= 0:
        raise ValueError("AP is undefined for a query with no positive")
    if rel.sum() > n_positives:
        raise ValueError(f"relevance has {int(rel.sum())} positives but n_positives is {n_positives}")
    hits = np.cumsum(rel)
    precision_at_k = hits / np.arange(1, len(rel) + 1)
    return float((precision_at_k * rel).sum() / n_positives)


def accuracy_at_k(relevance: Sequence[int], k: int) -> float:
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    return float(np.any(np.asarray(relevance[:k]) > 0))


def positive_ranks(scores: np.ndarray, positives: np.ndarray) -> np.ndarray:
    """1-based ranks of the positives in the ranking of `scores` [M] (sorted ascending)."""
    scores = np.asarray(scores)
    pos_idx = np.flatnonzero(positives)
    s = scores[pos_idx][:, None]                                   # [P, 1]
    before = (scores[None, :] > s).sum(1)                          # strictly higher score
    ties = ((scores[None, :] == s) & (np.arange(len(scores))[None, :] < pos_idx[:, None])).sum(1)
    return np.sort(before + ties + 1)


def full_gallery_ap(scores: np.ndarray, positives: np.ndarray) -> float:
    """AP (eq. 4) of one query over the whole gallery; `positives` [M] bool, at least one True."""
    ranks = positive_ranks(scores, positives)
    if len(ranks) == 0:
        raise ValueError("AP is undefined for a query with no positive")
    return ap_from_ranks(ranks)


def ap_from_ranks(ranks: Sequence[int]) -> float:
    """AP (eq. 4) from the sorted 1-based ranks of a query's positives: the mean of precision at each."""
    ranks = np.asarray(ranks)
    return float(np.mean(np.arange(1, len(ranks) + 1) / ranks))


def ranking(scores: np.ndarray) -> np.ndarray:
    """Gallery indices in ranked order (score descending, index ascending on ties)."""
    scores = np.asarray(scores)
    return np.lexsort((np.arange(len(scores)), -scores))
