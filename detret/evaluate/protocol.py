"""The evaluation protocol of Kiapour et al. as Kucer & Murray use it (Section 4.3).

A street query of category c is ranked against the shop photos of category c
only (every one of them: mAP is not truncated at k). Its positives are the
gallery photos of its product ((category, product id)). Per category:

- mAP: mean over the category's queries of AP (eq. 4) over the whole gallery;
- Acc@K (eq. 6): share of the queries with a positive in the top K;
- queries whose product has no photo in the gallery have no AP: they are
  excluded from mAP and Acc@K and counted in ``queries_without_positive``.

Averages: ``mean_over_categories`` (each category weighs the same, as the
paper's per-category table invites) and ``mean_over_queries``. With bootstrap
resamples, ``ci95`` holds every metric's 95% interval (per category and both
means; queries resampled within each category, :mod:`detret.evaluate.bootstrap`).
Scores are exact inner products of the descriptors (eq. 5), computed here
independently of the search index, so an approximate index does not change
the reported numbers.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np

from ..embed.artifact import Row, rows_by_category
from ..retrieval.metrics import positive_ranks
from .bootstrap import metric_intervals

DEFAULT_KS = (1, 20)
CURVE_MAX_K = 50


def category_ranks(gallery: np.ndarray, grows: List[Row], queries: np.ndarray, qrows: List[Row]
                   ) -> Dict[str, Dict]:
    """Per category: gallery size, and per query its positives' ranks (None: no positive)."""
    g_by_cat, q_by_cat = rows_by_category(grows), rows_by_category(qrows)
    out = {}
    for cat in sorted(q_by_cat):
        g_idx = np.array(g_by_cat.get(cat, []), np.int64)
        # (gallery position, product) for every product a photo shows: a photo listed for two is a positive for each
        pairs = [(pos, p) for pos, j in enumerate(g_idx) for p in grows[j].products]
        pair_pos = np.array([pos for pos, _ in pairs], np.int64)
        pair_product = np.array([p for _, p in pairs], np.int64)
        ranks: List = []
        if len(g_idx):
            g = gallery[g_idx]
            for start in range(0, len(q_by_cat[cat]), 1024):
                chunk = q_by_cat[cat][start:start + 1024]
                scores = queries[chunk] @ g.T  # [q, M]
                for row, qi in zip(scores, chunk):
                    positives = np.zeros(len(g_idx), bool)
                    positives[pair_pos[pair_product == qrows[qi].product_id]] = True
                    ranks.append(positive_ranks(row, positives) if positives.any() else None)
        else:
            ranks = [None] * len(q_by_cat[cat])
        out[cat] = {"gallery": int(len(g_idx)), "ranks": ranks}
    return out


def metrics_from_ranks(per_cat: Dict[str, Dict], ks: Sequence[int] = DEFAULT_KS, bootstrap: int = 0,
                       seed: int = 0) -> Dict:
    """Table 1's metrics from the positives' ranks; with ``bootstrap`` resamples, their 95% intervals
    under ``ci95`` (see :mod:`detret.evaluate.bootstrap`)."""
    result = {"per_category": {}, "ks": list(ks)}
    curve_cat = []
    # metric -> category -> the value of each scored query: the means over queries, and the resamples
    per_query: Dict[str, Dict[str, List[float]]] = {"mAP": {}, **{f"Acc@{k}": {} for k in ks}}
    for cat, info in per_cat.items():
        valid = [r for r in info["ranks"] if r is not None]
        aps = [float(np.mean(np.arange(1, len(r) + 1) / r)) for r in valid]
        first = np.array([r[0] for r in valid]) if valid else np.array([])
        per_query["mAP"][cat] = aps
        for k in ks:
            per_query[f"Acc@{k}"][cat] = list((first <= k).astype(float))
        row = {"queries": len(info["ranks"]), "queries_scored": len(valid),
               "queries_without_positive": len(info["ranks"]) - len(valid), "gallery": info["gallery"],
               "mAP": float(np.mean(aps)) if aps else None}
        for k in ks:
            row[f"Acc@{k}"] = float(np.mean(first <= k)) if valid else None
        curve = [float(np.mean(first <= k)) if valid else None for k in range(1, CURVE_MAX_K + 1)]
        row["acc_curve"] = curve
        if valid:
            curve_cat.append(curve)
        result["per_category"][cat] = row
    scored = [r for r in result["per_category"].values() if r["mAP"] is not None]
    result["mean_over_categories"] = {"mAP": float(np.mean([r["mAP"] for r in scored])) if scored else None,
                                      **{f"Acc@{k}": float(np.mean([r[f"Acc@{k}"] for r in scored]))
                                         if scored else None for k in ks}}
    pooled = {metric: [v for values in by_cat.values() for v in values] for metric, by_cat in per_query.items()}
    result["mean_over_queries"] = {metric: float(np.mean(values)) if values else None
                                   for metric, values in pooled.items()}
    result["acc_curve"] = [float(v) for v in np.mean(curve_cat, axis=0)] if curve_cat else []
    intervals = metric_intervals(per_query, bootstrap, seed)
    if intervals is not None:
        result["ci95"] = {**intervals, "resamples": int(bootstrap), "seed": int(seed)}
    return result


def evaluate_descriptors(gallery: np.ndarray, grows: List[Row], queries: np.ndarray, qrows: List[Row],
                         ks: Sequence[int] = DEFAULT_KS, bootstrap: int = 0, seed: int = 0) -> Dict:
    return metrics_from_ranks(category_ranks(gallery, grows, queries, qrows), ks, bootstrap, seed)
