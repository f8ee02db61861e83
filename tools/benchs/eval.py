"""eval: full-gallery mAP by counting, per positive, the items ranked before it against the sort-based
definition (sort the whole gallery, then eq. 4); checks that the values agree."""
from __future__ import annotations

from typing import Dict

import numpy as np

from .common import best_of


def bench_eval(args) -> Dict:
    from detret.retrieval.metrics import average_precision, full_gallery_ap

    rng = np.random.default_rng(1)
    scores = rng.normal(size=(args.queries, args.gallery)).astype(np.float32)
    positives = np.zeros_like(scores, dtype=bool)
    for i in range(args.queries):
        positives[i, rng.choice(args.gallery, size=int(rng.integers(1, 6)), replace=False)] = True

    def fast():
        return [full_gallery_ap(scores[i], positives[i]) for i in range(args.queries)]

    def by_sort():
        out = []
        for i in range(args.queries):
            order = np.lexsort((np.arange(args.gallery), -scores[i]))
            out.append(average_precision(positives[i, order].astype(int), int(positives[i].sum())))
        return out

    agree = np.allclose(fast(), by_sort(), atol=1e-9)
    t = best_of({"fast": fast, "sort": by_sort}, args.repeat)
    t_fast, t_sort = t["fast"], t["sort"]
    return {"benchmark": "eval", "gallery": args.gallery, "queries": args.queries, "fast_s": t_fast,
            "sort_reference_s": t_sort, "speedup": t_sort / t_fast, "values_agree": bool(agree)}
