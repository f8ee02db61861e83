"""95% bootstrap intervals of Table 1's metrics, over queries, resampled within each category.

A metric is a mean of per-query values (AP, or 1 when a positive is in the top K): per category the
mean of its queries, over categories the mean of the category means, over queries the mean of all.
One resample draws, in every category independently, as many of its queries as it has, with
replacement (a stratified bootstrap: the categories and their sizes are fixed by the benchmark, the
queries are the sample). The interval is the 2.5th and 97.5th percentiles of the resampled metric
(the percentile bootstrap, Efron & Tibshirani ch. 13), seeded, so an evaluation is reproducible.

Vectorised: a resample of a category is a [B, n] matrix of indices; B resamples of every metric of a
run cost a few array operations per category. Written here rather than taken from
``scipy.stats.bootstrap`` because that draws each statistic independently: the mean over categories
needs the same resample of every category for all of its terms, and the paired comparisons of runs
need the same resampled queries in both runs.
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

DEFAULT_RESAMPLES = 1000
LEVEL = 0.95


def resample_indices(sizes: Mapping[str, int], n_resamples: int, seed: int) -> Dict[str, np.ndarray]:
    """Per category, [n_resamples, n] indices drawn with replacement from range(n); the same for every
    run evaluated with this seed (which makes comparisons between runs paired)."""
    rng = np.random.default_rng(seed)
    return {cat: rng.integers(0, n, size=(n_resamples, n)) for cat, n in sorted(sizes.items()) if n > 0}


def resampled_means(values: Mapping[str, np.ndarray], indices: Mapping[str, np.ndarray]
                    ) -> Tuple[Dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """(per category [B] resampled means, over categories [B], over queries [B]) of per-query `values`."""
    per_cat = {cat: np.asarray(values[cat], np.float64)[idx].mean(axis=1) for cat, idx in indices.items()}
    over_categories = np.mean(np.stack(list(per_cat.values())), axis=0)
    sums = sum(np.asarray(values[cat], np.float64)[idx].sum(axis=1) for cat, idx in indices.items())
    over_queries = sums / sum(idx.shape[1] for idx in indices.values())
    return per_cat, over_categories, over_queries


def interval(samples: np.ndarray, level: float = LEVEL) -> List[float]:
    """[lo, hi]: the percentile interval of resampled values."""
    tail = 100.0 * (1.0 - level) / 2.0
    lo, hi = np.percentile(samples, [tail, 100.0 - tail])
    return [float(lo), float(hi)]


def metric_intervals(per_query: Mapping[str, Mapping[str, Sequence[float]]], n_resamples: int = DEFAULT_RESAMPLES,
                     seed: int = 0) -> Optional[Dict]:
    """Intervals of every metric: ``per_query[metric][category]`` holds the category's per-query values
    (queries without a positive left out). Returns {"per_category": {cat: {metric: [lo, hi]}},
    "mean_over_categories": {metric: [lo, hi]}, "mean_over_queries": {...}}, or None when there is
    nothing to resample (no query, or n_resamples 0)."""
    metrics = list(per_query)
    if n_resamples <= 0 or not metrics:
        return None
    sizes = {cat: len(v) for cat, v in per_query[metrics[0]].items()}
    indices = resample_indices(sizes, n_resamples, seed)
    if not indices:
        return None
    out: Dict = {"per_category": {cat: {} for cat in indices}, "mean_over_categories": {}, "mean_over_queries": {}}
    for metric in metrics:
        per_cat, over_cats, over_queries = resampled_means(per_query[metric], indices)
        for cat, samples in per_cat.items():
            out["per_category"][cat][metric] = interval(samples)
        out["mean_over_categories"][metric] = interval(over_cats)
        out["mean_over_queries"][metric] = interval(over_queries)
    return out


def curve_intervals(first_ranks: Mapping[str, Sequence[int]], n_resamples: int, seed: int, max_k: int
                    ) -> Optional[List[List[float]]]:
    """[lo, hi] of Acc@K (mean over categories) for K = 1..max_k, from each category's first-positive ranks
    (the same resamples as :func:`metric_intervals`). Per resample, a histogram of the clipped ranks
    (one ``bincount`` for all resamples) gives every K at once: memory [B, n], never [B, n, K]."""
    indices = resample_indices({cat: len(r) for cat, r in first_ranks.items()}, n_resamples, seed)
    if n_resamples <= 0 or not indices:
        return None
    acc = []
    for cat, idx in indices.items():
        ranks = np.minimum(np.asarray(first_ranks[cat], np.int64), max_k + 1)[idx]  # [B, n], max_k + 1: beyond
        offsets = (np.arange(idx.shape[0]) * (max_k + 2))[:, None]
        counts = np.bincount((ranks + offsets).ravel(), minlength=idx.shape[0] * (max_k + 2))
        counts = counts.reshape(idx.shape[0], max_k + 2)[:, 1:max_k + 1]
        acc.append(np.cumsum(counts, axis=1) / idx.shape[1])  # [B, max_k]: Acc@1..max_k
    over_categories = np.mean(np.stack(acc), axis=0)
    return [interval(over_categories[:, k]) for k in range(max_k)]


def paired_difference(a: Mapping[str, Sequence[float]], b: Mapping[str, Sequence[float]], n_resamples: int,
                      seed: int) -> Dict:
    """The difference b - a of the mean over categories of two runs' per-query values on the same queries
    (``a[cat][i]`` and ``b[cat][i]`` the same query), and its paired bootstrap interval: each resample
    draws the same queries for both runs, so what the runs share (a hard query is hard for both) cancels.
    {"difference", "ci95": [lo, hi] or None (no resamples), "queries"}."""
    cats = sorted(c for c in a if len(a[c]))
    if sorted(c for c in b if len(b[c])) != cats or any(len(a[c]) != len(b[c]) for c in cats):
        raise ValueError("a paired comparison needs the same queries in both runs")
    diff = {c: np.asarray(b[c], np.float64) - np.asarray(a[c], np.float64) for c in cats}
    point = float(np.mean([d.mean() for d in diff.values()])) if cats else None
    out = {"difference": point, "ci95": None, "queries": int(sum(len(d) for d in diff.values()))}
    indices = resample_indices({c: len(d) for c, d in diff.items()}, n_resamples, seed) if n_resamples > 0 else {}
    if indices:
        _, over_categories, _ = resampled_means(diff, indices)
        out["ci95"] = interval(over_categories)
    return out
