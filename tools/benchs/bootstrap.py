"""bootstrap: eval's 95% intervals (1,000 resamples within each category) at Exact Street2Shop's scale
against computing the metrics without them; the seconds added."""
from __future__ import annotations

from typing import Dict

import numpy as np

from .common import S2S_GALLERY, best_of


def bench_bootstrap(args) -> Dict:
    """`eval --bootstrap 1000` at Exact Street2Shop's scale: 20,357 queries split by the real gallery
    proportions, 8 runs (Table 1's columns), mAP and Acc@1/20, against the metrics without intervals
    (the positives' ranks given: what eval adds on top of its search)."""
    from detret.evaluate.protocol import metrics_from_ranks

    rng = np.random.default_rng(5)
    total = sum(S2S_GALLERY.values())
    runs = []
    for _ in range(8):
        per_cat = {}
        for cat, g_size in S2S_GALLERY.items():
            n_q = max(1, int(round(20357 * g_size / total)))
            ranks = [np.sort(rng.choice(np.arange(1, 2000), size=int(rng.integers(1, 4)), replace=False))
                     for _ in range(n_q)]
            per_cat[cat] = {"gallery": g_size, "ranks": ranks}
        runs.append(per_cat)

    def plain():
        return [metrics_from_ranks(r, (1, 20)) for r in runs]

    def with_intervals():
        return [metrics_from_ranks(r, (1, 20), bootstrap=args.resamples, seed=0) for r in runs]

    t = best_of({"plain": plain, "bootstrap": with_intervals}, args.repeat)
    return {"benchmark": "bootstrap", "queries": sum(len(c["ranks"]) for c in runs[0].values()), "runs": len(runs),
            "resamples": args.resamples, "metrics_s": t["plain"], "metrics_with_intervals_s": t["bootstrap"],
            "added_s": t["bootstrap"] - t["plain"], "ratio": t["bootstrap"] / t["plain"]}
