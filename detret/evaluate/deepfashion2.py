"""DeepFashion2 consumer-to-shop retrieval: Recall@K in both directions (Ibrahim et al. 2020).

Queries of one domain are ranked against every item of the other domain
(consumer-to-shop: consumer items with ``style`` > 0 against all shop items;
shop-to-consumer: the reverse). A query is correct at K when one of its top K
items matches it (same ``pair_id`` and the same ``style`` > 0, the dataset's
rule). Recall@K is the share of queries that are correct at K; queries with no
match among the gallery are excluded and counted. Ranking: score descending,
gallery row ascending on ties (as everywhere in detret).

Breakdown (Ibrahim et al. Tables 2 and 3): the scored queries grouped by their own
annotation's ``scale``, ``occlusion``, ``zoom_in`` and ``viewpoint`` level
(DeepFashion2's values 1, 2, 3 named in :data:`LEVELS`; any other value, e.g. a
record without the key, is "unknown (v)"), Recall@``breakdown_k`` (20) per level.
With bootstrap resamples, every Recall has a 95% percentile interval over the
queries (the same resampled queries for every run; a level's interval resamples
that level's queries).
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np

from ..data.deepfashion2 import DF2Item
from ..retrieval.metrics import positive_ranks
from .bootstrap import interval, resample_indices

DEFAULT_KS = (1, 5, 10, 20)
BREAKDOWN_K = 20
# DeepFashion2's annotation levels 1, 2, 3 per attribute, as its README names them
LEVELS: Dict[str, Tuple[str, str, str]] = {
    "scale": ("small", "moderate", "large"),
    "occlusion": ("slight", "medium", "heavy"),
    "zoom_in": ("no", "medium", "large"),
    "viewpoint": ("no wear", "frontal", "side or back"),
}


def level_name(attribute: str, value: int) -> str:
    names = LEVELS[attribute]
    return names[value - 1] if 1 <= value <= len(names) else f"unknown ({value})"


def _recall(first_ranks: np.ndarray, k: int, n_resamples: int, seed: int) -> Dict:
    """{"queries", "recall", "ci95"} of first-match ranks: the share <= k and its percentile interval."""
    out = {"queries": int(len(first_ranks)), "recall": float(np.mean(first_ranks <= k)) if len(first_ranks) else None,
           "ci95": None}
    if n_resamples > 0 and len(first_ranks):
        idx = resample_indices({"all": len(first_ranks)}, n_resamples, seed)["all"]
        out["ci95"] = interval((first_ranks[idx] <= k).mean(axis=1))
    return out


def level_breakdown(qitems: Sequence[DF2Item], first_ranks: np.ndarray, k: int = BREAKDOWN_K,
                    n_resamples: int = 0, seed: int = 0) -> Dict[str, Dict[str, Dict]]:
    """{attribute: {level name: {"queries", "recall", "ci95"}}} of the scored queries (``qitems[i]`` scored
    ``first_ranks[i]``), levels in DeepFashion2's order, then any unknown ones."""
    out: Dict[str, Dict[str, Dict]] = {}
    for attribute in LEVELS:
        values = np.array([getattr(q, attribute) for q in qitems], np.int64)
        ordered = [v for v in (1, 2, 3) if (values == v).any()] + sorted(set(values.tolist()) - {1, 2, 3})
        out[attribute] = {level_name(attribute, v): _recall(first_ranks[values == v], k, n_resamples, seed)
                          for v in ordered}
    return out


def first_match_ranks(queries: np.ndarray, qitems: List[DF2Item], gallery: np.ndarray, gitems: List[DF2Item],
                      chunk: int = 1024) -> Tuple[List[DF2Item], np.ndarray, int]:
    """(the queries with a match, the 1-based rank of each one's first match, queries without a match)."""
    keys = np.array([(g.pair_id, g.style) for g in gitems], dtype=np.int64).reshape(-1, 2)
    domains = np.array([g.domain for g in gitems])
    scored: List[DF2Item] = []
    first_ranks: List[int] = []
    for start in range(0, len(qitems), chunk):
        scores = queries[start:start + chunk] @ gallery.T
        for row, q in zip(scores, qitems[start:start + chunk]):
            if q.style <= 0:
                continue
            positives = (keys[:, 0] == q.pair_id) & (keys[:, 1] == q.style) & (domains != q.domain)
            if positives.any():
                scored.append(q)
                first_ranks.append(int(positive_ranks(row, positives)[0]))
    return scored, np.array(first_ranks, np.int64), len(qitems) - len(scored)


def recall_at_k(queries: np.ndarray, qitems: List[DF2Item], gallery: np.ndarray, gitems: List[DF2Item],
                ks: Sequence[int] = DEFAULT_KS, chunk: int = 1024, bootstrap: int = 0, seed: int = 0,
                breakdown_k: int = BREAKDOWN_K) -> Dict:
    """{"queries", "queries_without_match", "recall": {K: value}, "ci95": {K: [lo, hi]} (with ``bootstrap``
    resamples), "levels": Recall@``breakdown_k`` per annotation level} for descriptors [Q, D] and [G, D]."""
    scored, ranks, without = first_match_ranks(queries, qitems, gallery, gitems, chunk)
    overall = {int(k): _recall(ranks, int(k), bootstrap, seed) for k in ks}
    result = {"queries": len(qitems), "queries_without_match": without,
              "recall": {k: r["recall"] for k, r in overall.items()},
              "levels": level_breakdown(scored, ranks, breakdown_k, bootstrap, seed), "breakdown_k": breakdown_k}
    if bootstrap > 0:
        result["ci95"] = {k: r["ci95"] for k, r in overall.items()}
    return result
