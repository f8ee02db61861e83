"""Paired comparisons of two evaluated runs: the difference of a mean over categories, with its interval.

The two runs are scored on the same queries (``per_query.json`` of ``detret eval``, matched by
(category, photo id, record); a query one run could not score is left out of both). The interval is
the paired, stratified bootstrap of :func:`detret.evaluate.bootstrap.paired_difference`. A comparison
:func:`verdict` calls "better" or "worse" only when its 95% interval excludes 0, otherwise "noise";
without per-query values (an evaluation written before they were kept) it is "untested".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np

from .bootstrap import DEFAULT_RESAMPLES, paired_difference


@dataclass(frozen=True)
class Comparison:
    """Run ``b`` minus run ``a`` on ``metric`` (mean over categories), in percentage points."""
    a: str
    b: str
    metric: str
    difference: float
    ci95: Optional[Tuple[float, float]]  # None: no per-query values, or no resamples
    queries: int = 0                     # queries both runs scored (0: untested)

    @property
    def verdict(self) -> str:
        """"better" / "worse" (b than a: the interval excludes 0), "noise", or "untested"."""
        if self.ci95 is None:
            return "untested"
        lo, hi = self.ci95
        return "better" if lo > 0 else "worse" if hi < 0 else "noise"

    def text(self) -> str:
        """"+2.1 [+0.3, +3.9]" (points, 95% interval), or the difference alone when untested."""
        if self.ci95 is None:
            return f"{self.difference:+.1f}"
        return f"{self.difference:+.1f} [{self.ci95[0]:+.1f}, {self.ci95[1]:+.1f}]"


def metric_values(entry: Mapping[str, List], metric: str) -> np.ndarray:
    """A category's per-query values of ``metric`` from its per_query.json entry: AP, or Acc@K as 0/1."""
    if metric == "mAP":
        return np.asarray(entry["ap"], np.float64)
    if metric.startswith("Acc@"):
        return (np.asarray(entry["first_rank"], np.int64) <= int(metric[4:])).astype(np.float64)
    raise ValueError(f"no per-query values for the metric {metric!r}")


def aligned_values(run_a: Mapping[str, Dict], run_b: Mapping[str, Dict], metric: str
                   ) -> Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]:
    """Per category, the values of the queries both runs scored, in run a's order."""
    out_a, out_b = {}, {}
    for cat in sorted(set(run_a) & set(run_b)):
        b_position = {tuple(key): i for i, key in enumerate(run_b[cat]["queries"])}
        pairs = [(i, b_position[tuple(key)]) for i, key in enumerate(run_a[cat]["queries"])
                 if tuple(key) in b_position]
        if pairs:
            ia, ib = (np.array(p, np.int64) for p in zip(*pairs))
            out_a[cat], out_b[cat] = metric_values(run_a[cat], metric)[ia], metric_values(run_b[cat], metric)[ib]
    return out_a, out_b


def compare(results: Mapping[str, Dict], per_query: Optional[Mapping[str, Dict]], a: str, b: str, metric: str,
            resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> Comparison:
    """``b`` against ``a`` on ``metric``: the difference of the published means (eval's metrics.json) and the
    paired interval from the per-query values, when there are some."""
    mean_a = results[a]["mean_over_categories"][metric]
    mean_b = results[b]["mean_over_categories"][metric]
    difference = 100.0 * (mean_b - mean_a)
    if not per_query or a not in per_query or b not in per_query or resamples <= 0:
        return Comparison(a, b, metric, difference, None)
    values_a, values_b = aligned_values(per_query[a], per_query[b], metric)
    paired = paired_difference(values_a, values_b, resamples, seed)
    if paired["ci95"] is None:
        return Comparison(a, b, metric, difference, None)
    lo, hi = paired["ci95"]
    # the point difference of the queries both runs scored (the published means' when they are the same)
    return Comparison(a, b, metric, 100.0 * paired["difference"], (100.0 * lo, 100.0 * hi), paired["queries"])
