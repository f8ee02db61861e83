"""A reading of Table 1: the paper's three questions answered from measured numbers.

The paper (Section 4.3) draws three conclusions from its Table 1:

1. cropping the database photos with the detector helps both losses
   (Tri DB F -> Tri DB C, mAP DB F -> mAP DB C);
2. the triplet and AP losses reach similar mAP and Acc@1, the AP loss a lower Acc@20;
3. every ensemble beats its members, most of all when the two losses are
   combined (Crops = Tri DB C + mAP DB C: +3.5 mAP over the best cropped model).

:func:`read_table` states, for the runs present in an evaluation, what our
numbers say on each question: the differences are computed, never assumed, each
with its paired 95% bootstrap interval over the same queries
(:mod:`detret.evaluate.paired`). A difference is stated as an effect ("cropping
helps") only when its interval excludes 0; otherwise the finding says "within
noise" and agrees with nothing. Each effect says whether it agrees with the paper. Runs are recognised by the
names of the paper's recipe (``detret/resources/recipes/paper.yaml``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Tuple

from ..config.recipes import default_model_name, paper
from ..search.rerank import split_reranked
from .bootstrap import DEFAULT_RESAMPLES
from .paired import Comparison, compare

# The paper's Table 1 (``detret/resources/recipes/paper.yaml``): its runs, their columns, its ensembles and
# its published means over categories (%), the numbers a full-scale run compares with.
PAPER = paper()
PAPER_MEANS: Dict[str, Dict[str, float]] = PAPER.published()
PAPER_NAMES = {m.name: m.column for m in PAPER.models}
PAPER_ENSEMBLES = {e.name: e.members for e in PAPER.ensembles}
TABLE_ORDER = PAPER.columns()


@dataclass(frozen=True)
class Finding:
    question: str        # "cropping" | "losses" | "ensembles" | "reranking" | "whitening" | "masks"
    text: str            # one sentence with the measured numbers (percentage points)
    agrees_with_paper: Optional[bool]  # None where the paper makes no claim to compare with


def table_order(names) -> List[str]:
    """Run names in Table 1's column order; other names after them, sorted."""
    names = list(names)
    return [n for n in TABLE_ORDER if n in names] + sorted(n for n in names if n not in TABLE_ORDER)


def _mean(results: Mapping[str, Dict], run: str, metric: str) -> Optional[float]:
    value = results[run]["mean_over_categories"].get(metric)
    return None if value is None else 100.0 * value


NOISE = "within noise (its 95% interval holds 0)"
UNTESTED = "untested (no per-query values: rerun `detret eval --force`)"


def conclusion(c: Comparison, better: str, worse: str, paper: Optional[str]) -> Tuple[str, Optional[bool]]:
    """(what the comparison lets us say, whether it agrees with the paper's direction ``paper``: "better",
    "worse" or None for no claim). Noise is never called an effect: it agrees with nothing."""
    if c.verdict in ("better", "worse"):
        said = better if c.verdict == "better" else worse
        if paper is None:
            return said, None
        agrees = c.verdict == paper
        return f"{said}{', as in the paper' if agrees else ', unlike the paper'}", agrees
    return (NOISE if c.verdict == "noise" else UNTESTED), None


class Comparer:
    """The comparisons of one evaluation, all with the evaluation's resamples and seed."""

    def __init__(self, results: Mapping[str, Dict], per_query: Optional[Mapping[str, Dict]]) -> None:
        self.results, self.per_query = results, per_query
        ci = next(iter(results.values()), {}).get("ci95") or {}
        self.resamples, self.seed = int(ci.get("resamples", DEFAULT_RESAMPLES)), int(ci.get("seed", 0))

    def __call__(self, a: str, b: str, metric: str) -> Comparison:
        return compare(self.results, self.per_query, a, b, metric, self.resamples, self.seed)


def each_metric(compare: Comparer, a: str, b: str) -> str:
    """"mAP +1.0 [-0.2, +2.1] (within noise), Acc@1 ... (higher), ...": b against a on each metric both have."""
    words = {"better": "higher", "worse": "lower", "noise": "within noise", "untested": "untested"}
    parts = [f"{m} {c.text()} ({words[c.verdict]})" for m in ("mAP", "Acc@1", "Acc@20")
             if _mean(compare.results, a, m) is not None and _mean(compare.results, b, m) is not None
             for c in [compare(a, b, m)]]
    return ", ".join(parts)


def _cropping(compare: Comparer, have: set) -> List[Finding]:
    """1. Cropping the database: DB F -> DB C for each loss, mean over categories."""
    findings = []
    for loss, label in (("triplet", "triplet"), ("ap", "AP")):
        full, crops = default_model_name(loss, "full"), default_model_name(loss, "detected")
        if {full, crops} <= have:
            d_map, d_acc1 = compare(full, crops, "mAP"), compare(full, crops, "Acc@1")
            said, agrees = conclusion(d_map, "cropping helps here", "cropping hurts here", "better")
            findings.append(Finding(
                "cropping",
                f"With the {label} loss, cropping the shop photos ({PAPER_NAMES[full]} -> {PAPER_NAMES[crops]}) "
                f"changes mean mAP by {d_map.text()} and Acc@1 by {d_acc1.text()} points: {said}.", agrees))
    return findings


def _losses(compare: Comparer, have: set) -> List[Finding]:
    """2. Triplet vs AP loss at equal database crops."""
    findings = []
    for crops_name, shop_crops in (("whole", "full"), ("cropped", "detected")):
        tri, ap = default_model_name("triplet", shop_crops), default_model_name("ap", shop_crops)
        if {tri, ap} <= have:
            differences = each_metric(compare, tri, ap)
            findings.append(Finding(
                "losses", f"On {crops_name} shop photos, the AP loss differs from the triplet loss by {differences} "
                "points (the paper: similar mAP and Acc@1, lower Acc@20 for the AP loss).", None))
    return findings


def _ensembles(compare: Comparer, have: set) -> List[Finding]:
    """3. Ensembles against their best member, and the two losses against crops + whole photos."""
    findings = []
    for ens, (a, b) in PAPER_ENSEMBLES.items():
        if {ens, a, b} <= have:
            best = max((a, b), key=lambda r: _mean(compare.results, r, "mAP"))
            d_map, d_acc1 = compare(best, ens, "mAP"), compare(best, ens, "Acc@1")
            said, agrees = conclusion(d_map, "the ensemble improves on its members",
                                       "the ensemble is worse than its best member", "better")
            findings.append(Finding(
                "ensembles",
                f"{ens} ({a} + {b}) against its best member {best}: mAP {d_map.text()}, Acc@1 {d_acc1.text()} "
                f"points: {said}.", agrees))
    if {"Crops", "Tris", "mAPs"} <= have:
        same = max(("Tris", "mAPs"), key=lambda r: _mean(compare.results, r, "mAP"))
        c = compare(same, "Crops", "mAP")
        said, agrees = conclusion(c, "the two losses are the more complementary pair here",
                                   "crops and whole photos under one loss are the more complementary pair here",
                                   "better")
        findings.append(Finding(
            "ensembles",
            f"Combining the two losses (Crops, mAP {_mean(compare.results, 'Crops', 'mAP'):.1f}) against combining "
            f"crops and whole photos under one loss (the better of Tris/mAPs, {same}, mAP "
            f"{_mean(compare.results, same, 'mAP'):.1f}): {c.text()} points: {said}.", agrees))
    return findings


def _reranking(compare: Comparer, have: set) -> List[Finding]:
    """4. Each re-ranked run against the run it re-ranks (not in the paper; Ibrahim et al. saw diffusion raise
    Recall@1 a little and lower Recall@20)."""
    findings = []
    for name in sorted(have):
        base, method = split_reranked(name)
        if method and base in have:
            findings.append(Finding("reranking", f"{name} against {base}: {each_metric(compare, base, name)} points.",
                                    None))
    return findings


def _whitening(compare: Comparer, have: set) -> List[Finding]:
    """5. Each whitened, reduced run against the run it whitens (not in the paper; Radenovic et al. saw learned
    whitening keep or raise mAP while reducing the dimension)."""
    findings = []
    for source, whitened in PAPER.whitened():
        if {source, whitened} <= have:
            c = compare(source, whitened, "mAP")
            said = ("whitening keeps mAP here" if c.verdict == "noise" else
                    conclusion(c, "whitening raises mAP here", "whitening lowers mAP here", None)[0])
            findings.append(Finding(
                "whitening", f"{whitened} ({PAPER.whiten.method}, {PAPER.whiten.reduce}x fewer dimensions) against "
                f"{source}: {each_metric(compare, source, whitened)} points: {said}.", None))
    return findings


def _masks(compare: Comparer, have: set) -> List[Finding]:
    """6. Mask crops against box crops, the same loss (not in the paper; the 2026 tools cut garments out by
    their masks): ap-masks against ap-crops."""
    findings = []
    for crops, masks in (("ap-crops", "ap-masks"),):
        if {crops, masks} <= have:
            c = compare(crops, masks, "mAP")
            said = conclusion(c, "mask crops help here", "mask crops hurt here", None)[0]
            findings.append(Finding("masks", f"{masks} (the background removed by the detection's mask) against "
                                    f"{crops} (box crops): {each_metric(compare, crops, masks)} points: {said}.",
                                    None))
    return findings


def read_table(results: Mapping[str, Dict], per_query: Optional[Mapping[str, Dict]] = None) -> List[Finding]:
    """Findings on the paper's questions for the runs in ``results`` (eval's metrics.json), each difference
    with its paired 95% interval from ``per_query`` (eval's per_query.json; without it, untested)."""
    compare, have = Comparer(results, per_query), set(results)
    return (_cropping(compare, have) + _losses(compare, have) + _ensembles(compare, have)
            + _reranking(compare, have) + _whitening(compare, have) + _masks(compare, have))


TITLES = {"cropping": "Does cropping the database help?", "losses": "Triplet loss or AP loss?",
          "ensembles": "Do the ensembles help?", "reranking": "Does re-ranking help?",
          "whitening": "Does whitening keep the accuracy with fewer dimensions?",
          "masks": "Do mask crops help?"}


def reading_markdown(findings: List[Finding], titles: Mapping[str, str] = TITLES, nothing: str = (
        "No run pairs of the paper's Table 1 (tri-full, tri-crops, ap-full, ap-crops, Tris, ...) to compare.")) -> str:
    """The findings as markdown, one bold question of `titles` (in its order) then its findings."""
    if not findings:
        return nothing + "\n"
    out = []
    for question in titles:
        items = [f for f in findings if f.question == question]
        if items:
            out.append(f"**{titles[question]}**\n")
            out.extend(f"- {f.text}" for f in items)
            out.append("")
    return "\n".join(out)
