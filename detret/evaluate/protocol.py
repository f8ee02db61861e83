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
the reported numbers; a re-ranked run is ranked by its re-ranker's keys over
those exact scores (:mod:`detret.search.rerank`).

``protocol="all"`` (Morelli et al.): a query is ranked against every shop photo,
no category filter; its positives are still its own product's photos ((category,
product id)). Acc@K is then their Recall@K. The breakdown stays per query category.
"""
from __future__ import annotations

from typing import Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..config.choices import Protocol, check_choice
from ..embed.artifact import Row, rows_by_category
from ..retrieval.metrics import ap_from_ranks, positive_ranks
from .bootstrap import curve_intervals, metric_intervals

DEFAULT_KS = (1, 20)
# scorer(gallery [M, D], queries [Q, D]) -> score rows [q, M], chunk after chunk, in query order
Scorer = Callable[[np.ndarray, np.ndarray], Iterator[np.ndarray]]
CURVE_MAX_K = 50



def _positive_pairs(g_idx: np.ndarray, grows: List[Row]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(gallery position, category, product) for every product a gallery photo shows: a photo listed for two
    products is a positive for each."""
    pairs = [(pos, grows[j].category, p) for pos, j in enumerate(g_idx) for p in grows[j].products]
    return (np.array([pos for pos, _, _ in pairs], np.int64), np.array([c for _, c, _ in pairs], object),
            np.array([p for _, _, p in pairs], np.int64))


def plain_scores(gallery: np.ndarray, queries: np.ndarray, chunk: int = 1024) -> Iterator[np.ndarray]:
    """Score rows [q, M] of the queries against the gallery, ``chunk`` queries at a time (eq. 5)."""
    for start in range(0, len(queries), chunk):
        yield queries[start:start + chunk] @ gallery.T


def category_ranks(gallery: np.ndarray, grows: List[Row], queries: np.ndarray, qrows: List[Row],
                   protocol: str = "category", scorer: Optional[Scorer] = None) -> Dict[str, Dict]:
    """Per query category: gallery size, its queries' keys ``(photo_id, record)`` and per query its positives'
    ranks (None: no positive). ``protocol``: "category" ranks a query against its category's shop photos,
    "all" against every shop photo (Morelli et al.'s Recall@K); ``scorer(gallery, queries)`` yields the
    score rows (default :func:`plain_scores`; a re-ranker's, :mod:`detret.search.rerank`)."""
    check_choice(protocol, Protocol, "protocol")
    scorer = scorer or plain_scores
    g_by_cat, q_by_cat = rows_by_category(grows), rows_by_category(qrows)
    everything = np.arange(len(grows), dtype=np.int64)
    out = {}
    for cat in sorted(q_by_cat):
        g_idx = np.array(g_by_cat.get(cat, []), np.int64) if protocol == "category" else everything
        pair_pos, pair_cat, pair_product = _positive_pairs(g_idx, grows)
        q_idx = q_by_cat[cat]
        ranks: List = [None] * len(q_idx)
        if len(g_idx):
            rows = (row for chunk in scorer(gallery[g_idx], queries[q_idx]) for row in chunk)
            for n, (row, qi) in enumerate(zip(rows, q_idx)):
                positives = np.zeros(len(g_idx), bool)
                positives[pair_pos[(pair_product == qrows[qi].product_id) & (pair_cat == cat)]] = True
                ranks[n] = positive_ranks(row, positives) if positives.any() else None
        out[cat] = {"gallery": int(len(g_idx)), "ranks": ranks,
                    "queries": [[qrows[qi].photo_id, qrows[qi].record] for qi in q_idx]}
    return out


def per_query_values(per_cat: Mapping[str, Dict]) -> Dict[str, Dict[str, List]]:
    """Per category, the scored queries' keys, AP and first-positive rank (``per_query.json``: what paired
    comparisons of runs need, :func:`detret.evaluate.bootstrap.paired_difference`)."""
    out = {}
    for cat, info in per_cat.items():
        scored = [(key, r) for key, r in zip(info.get("queries", [None] * len(info["ranks"])), info["ranks"])
                  if r is not None]
        out[cat] = {"queries": [key for key, _ in scored],
                    "ap": [ap_from_ranks(r) for _, r in scored],
                    "first_rank": [int(r[0]) for _, r in scored]}
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
        aps = [ap_from_ranks(r) for r in valid]
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
        first_ranks = {cat: [r[0] for r in info["ranks"] if r is not None] for cat, info in per_cat.items()}
        result["ci95"] = {**intervals, "acc_curve": curve_intervals(first_ranks, bootstrap, seed, CURVE_MAX_K),
                          "resamples": int(bootstrap), "seed": int(seed)}
    return result


def evaluate_descriptors(gallery: np.ndarray, grows: List[Row], queries: np.ndarray, qrows: List[Row],
                         ks: Sequence[int] = DEFAULT_KS, bootstrap: int = 0, seed: int = 0,
                         protocol: str = "category", scorer: Optional[Scorer] = None) -> Dict:
    """Table 1's metrics of descriptors (see :func:`category_ranks` and :func:`metrics_from_ranks`)."""
    return metrics_from_ranks(category_ranks(gallery, grows, queries, qrows, protocol, scorer), ks, bootstrap, seed)
