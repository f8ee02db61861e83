"""The reading of `detret demo --recipe seeds`: each seed system's result beside its paper's claim.

The systems are the recipe ``detret/resources/recipes/seeds.yaml`` (one configuration each, a set of
``retrieval.train`` keys over the demo's own), trained on the shop crops of the demo's detector,
embedded, searched within category and evaluated in Table 1's layout (``<run_dir>/eval-seeds/``,
:mod:`detret.demo.recipe_steps`). The reading compares runs of that recipe by name, each difference
with its paired 95% interval.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Mapping, Optional

from ..config.recipes import load_recipe
from ..evaluate.paired import Comparison
from ..evaluate.reading import NOISE, UNTESTED, Comparer, Finding, conclusion, reading_markdown


IBRAHIM = "Ibrahim et al. 2020"  # the seed paper whose four losses the reading ranks (the recipe's `paper`)


def _mean(results: Mapping[str, Dict], run: str, metric: str = "mAP") -> Optional[float]:
    value = results.get(run, {}).get("mean_over_categories", {}).get(metric)
    return None if value is None else 100.0 * value


def _compare(compare: Callable[[str, str, str], Comparison], results, a: str, b: str, claim: str, topic: str
             ) -> Optional[Finding]:
    """`b` against `a` on mean mAP with its paired interval, and whether that agrees with the paper's `claim`
    (that b is better); noise agrees with nothing."""
    ma, mb = _mean(results, a), _mean(results, b)
    if ma is None or mb is None:
        return None
    c = compare(a, b, "mAP")
    said, agrees = conclusion(c, f"{b} is better here", f"{b} is worse here", "better")
    return Finding(topic, f"{b} vs {a}: mean mAP {mb:.1f} vs {ma:.1f} ({c.text()} points); {claim} - {said}.", agrees)


def read_seeds(results: Mapping[str, Dict], per_query: Optional[Mapping[str, Dict]] = None) -> List[Finding]:
    """Each system beside its paper's claim, on mean mAP over categories (eval's metrics.json), each difference
    with its paired 95% interval from eval's per_query.json."""
    compare = Comparer(results, per_query)
    findings = [f for f in (
        _compare(compare, results, "gajic-shared", "gajic-ss", "Gajic & Baldrich: separate streams improve on the "
                 "shared network (about 1%)", "streams"),
        _compare(compare, results, "tri-crops", "darn", "Huang et al.: attribute-guided domain networks beat one "
                 "network without attributes", "attributes"),
        _compare(compare, results, "tri-crops", "morelli", "Morelli et al.: the hardest negative beats the standard "
                 "triplet", "hardest"),
    ) if f is not None]
    findings += _metric_losses(compare, results)
    ranked = sorted((r for r in results if _mean(results, r) is not None), key=lambda r: -_mean(results, r))
    if len(ranked) >= 2:
        c = compare(ranked[1], ranked[0], "mAP")
        lead = "ahead beyond noise" if c.verdict == "better" else NOISE if c.verdict == "noise" else UNTESTED
        findings.append(Finding("best", f"Best system here: {ranked[0]} (mean mAP {_mean(results, ranked[0]):.1f}); "
                                        f"against the runner-up {ranked[1]}: {c.text()} points, {lead}; worst: "
                                        f"{ranked[-1]} ({_mean(results, ranked[-1]):.1f}).", None))
    return findings


def _metric_losses(compare: Callable[[str, str, str], Comparison], results) -> List[Finding]:
    """Ibrahim et al.'s claim (N-pair best, lifted lowest), each order tested pairwise: agrees when every
    comparison it needs is beyond noise, disagrees when one is beyond noise the other way."""
    losses = tuple(m.name for m in load_recipe("seeds").models if m.paper == IBRAHIM)
    if any(_mean(results, r) is None for r in losses):
        return []
    npair = [compare(o, "npair", "mAP") for o in losses if o != "npair"]
    lifted = [compare(o, "lifted", "mAP") for o in losses if o != "lifted"]
    if all(c.verdict == "better" for c in npair) and all(c.verdict == "worse" for c in lifted):
        agrees: Optional[bool] = True
    elif any(c.verdict == "worse" for c in npair) or any(c.verdict == "better" for c in lifted):
        agrees = False
    else:
        agrees = None
    ranked = ", ".join(f"{r} {_mean(results, r):.1f}" for r in sorted(losses, key=lambda r: -_mean(results, r)))
    versus = "; ".join(f"{c.b} - {c.a} {c.text()}" for c in npair + lifted)
    said = {True: "as the paper", False: "unlike the paper", None: "no order beyond noise that decides it"}[agrees]
    return [Finding("metric losses", f"Ibrahim et al.'s losses by mean mAP: {ranked}. Paired: {versus} points. "
                                     f"The paper: N-pair best, lifted lowest - {said} here.", agrees)]


TITLES = {"streams": "Separate street and shop streams (Gajic & Baldrich)?",
          "attributes": "Attribute-aware domain networks (DARN)?",
          "hardest": "The hardest negative (Morelli et al.)?",
          "metric losses": "Which metric-learning loss (Ibrahim et al.)?",
          "best": "Overall"}


def seeds_markdown(findings: List[Finding]) -> str:
    return reading_markdown(findings, TITLES, "No seed systems evaluated to compare.")
