"""DeepFashion2 consumer-to-shop retrieval: Recall@K in both directions (Ibrahim et al. 2020).

Queries of one domain are ranked against every item of the other domain
(consumer-to-shop: consumer items with ``style`` > 0 against all shop items;
shop-to-consumer: the reverse). A query is correct at K when one of its top K
items matches it (same ``pair_id`` and the same ``style`` > 0, the dataset's
rule). Recall@K is the share of queries that are correct at K; queries with no
match among the gallery are excluded and counted. Ranking: score descending,
gallery row ascending on ties (as everywhere in detret).
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np

from ..data.deepfashion2 import DF2Item
from ..retrieval.metrics import positive_ranks

DEFAULT_KS = (1, 5, 10, 20)


def recall_at_k(queries: np.ndarray, qitems: List[DF2Item], gallery: np.ndarray, gitems: List[DF2Item],
                ks: Sequence[int] = DEFAULT_KS, chunk: int = 1024) -> Dict:
    """{"queries", "queries_without_match", "recall": {K: value}} for descriptors [Q, D] and [G, D]."""
    keys = np.array([(g.pair_id, g.style) for g in gitems], dtype=np.int64).reshape(-1, 2)
    domains = np.array([g.domain for g in gitems])
    first_ranks: List[int] = []
    without = 0
    for start in range(0, len(qitems), chunk):
        scores = queries[start:start + chunk] @ gallery.T
        for row, q in zip(scores, qitems[start:start + chunk]):
            if q.style <= 0:
                without += 1
                continue
            positives = (keys[:, 0] == q.pair_id) & (keys[:, 1] == q.style) & (domains != q.domain)
            if not positives.any():
                without += 1
                continue
            first_ranks.append(int(positive_ranks(row, positives)[0]))
    ranks = np.array(first_ranks)
    return {"queries": len(qitems), "queries_without_match": without,
            "recall": {int(k): (float(np.mean(ranks <= k)) if len(ranks) else None) for k in ks}}
