"""A reading of Table 1: the paper's three questions answered from measured numbers.

The paper (Section 4.3) draws three conclusions from its Table 1:

1. cropping the database photos with the detector helps both losses
   (Tri DB F -> Tri DB C, mAP DB F -> mAP DB C);
2. the triplet and AP losses reach similar mAP and Acc@1, the AP loss a lower Acc@20;
3. every ensemble beats its members, most of all when the two losses are
   combined (Crops = Tri DB C + mAP DB C: +3.5 mAP over the best cropped model).

:func:`read_table` states, for the runs present in an evaluation, what our
numbers say on each question: the differences are computed, never assumed, and
each finding says whether it agrees with the paper. Runs are recognised by the
names ``detret demo`` gives them (``detret.runs.layout.PAPER_MODELS``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional

from ..runs.layout import PAPER_ENSEMBLES, PAPER_MODELS, TABLE_ORDER, default_model_name

# The paper's Table 1, average over categories (%), on the real Exact Street2Shop (ResNet-50,
# ImageNet weights, 800 px, X101 Mask R-CNN crops): the numbers a full-scale run compares with.
PAPER_MEANS: Dict[str, Dict[str, float]] = {
    "tri-full": {"mAP": 24.29, "Acc@1": 28.04, "Acc@20": 56.25},
    "tri-crops": {"mAP": 26.14, "Acc@1": 29.88, "Acc@20": 57.57},
    "ap-full": {"mAP": 23.89, "Acc@1": 27.34, "Acc@20": 49.72},
    "ap-crops": {"mAP": 26.00, "Acc@1": 30.15, "Acc@20": 55.31},
    "Tris": {"mAP": 27.03, "Acc@1": 30.82, "Acc@20": 58.56},
    "mAPs": {"mAP": 27.04, "Acc@1": 30.84, "Acc@20": 53.98},
    "Fulls": {"mAP": 28.19, "Acc@1": 32.09, "Acc@20": 58.11},
    "Crops": {"mAP": 29.67, "Acc@1": 34.42, "Acc@20": 60.36},
}
PAPER_NAMES = {m.name: m.paper_name for m in PAPER_MODELS}


@dataclass(frozen=True)
class Finding:
    question: str        # "cropping" | "losses" | "ensembles"
    text: str            # one sentence with the measured numbers (percentage points)
    agrees_with_paper: Optional[bool]  # None where the paper makes no claim to compare with


def table_order(names) -> List[str]:
    """Run names in Table 1's column order; other names after them, sorted."""
    names = list(names)
    return [n for n in TABLE_ORDER if n in names] + sorted(n for n in names if n not in TABLE_ORDER)


def _mean(results: Mapping[str, Dict], run: str, metric: str) -> Optional[float]:
    value = results[run]["mean_over_categories"].get(metric)
    return None if value is None else 100.0 * value


def _fmt(delta: float) -> str:
    return f"{delta:+.1f}"


def read_table(results: Mapping[str, Dict]) -> List[Finding]:
    """Findings on the paper's questions for the runs in ``results`` (eval's metrics.json)."""
    findings: List[Finding] = []
    have = set(results)
    # 1. Cropping the database: DB F -> DB C for each loss, mean over categories.
    for loss, label in (("triplet", "triplet"), ("ap", "AP")):
        full, crops = default_model_name(loss, "full"), default_model_name(loss, "detected")
        if {full, crops} <= have:
            d_map = _mean(results, crops, "mAP") - _mean(results, full, "mAP")
            d_acc1 = _mean(results, crops, "Acc@1") - _mean(results, full, "Acc@1")
            helps = d_map > 0
            findings.append(Finding(
                "cropping",
                f"With the {label} loss, cropping the shop photos ({PAPER_NAMES[full]} -> {PAPER_NAMES[crops]}) "
                f"changes mean mAP by {_fmt(d_map)} and Acc@1 by {_fmt(d_acc1)} points: cropping "
                f"{'helps' if helps else 'does not help'} here"
                f"{', as in the paper' if helps else ', unlike the paper'}.",
                helps))
    # 2. Triplet vs AP loss at equal database crops.
    for crops_name, shop_crops in (("whole", "full"), ("cropped", "detected")):
        tri, ap = default_model_name("triplet", shop_crops), default_model_name("ap", shop_crops)
        if {tri, ap} <= have:
            d = {m: _mean(results, ap, m) - _mean(results, tri, m) for m in ("mAP", "Acc@1", "Acc@20")
                 if _mean(results, ap, m) is not None and _mean(results, tri, m) is not None}
            parts = ", ".join(f"{m} {_fmt(v)}" for m, v in d.items())
            findings.append(Finding(
                "losses",
                f"On {crops_name} shop photos, the AP loss differs from the triplet loss by {parts} points "
                "(the paper: similar mAP and Acc@1, lower Acc@20 for the AP loss).",
                None))
    # 3. Ensembles against their best member.
    for ens, (a, b) in PAPER_ENSEMBLES.items():
        if {ens, a, b} <= have:
            best = max((a, b), key=lambda r: _mean(results, r, "mAP"))
            d_map = _mean(results, ens, "mAP") - _mean(results, best, "mAP")
            d_acc1 = _mean(results, ens, "Acc@1") - _mean(results, best, "Acc@1")
            better = d_map > 0
            findings.append(Finding(
                "ensembles",
                f"{ens} ({a} + {b}) against its best member {best}: mAP {_fmt(d_map)}, Acc@1 {_fmt(d_acc1)} "
                f"points; the ensemble {'improves on' if better else 'does not improve on'} its members"
                f"{', as in the paper' if better else ', unlike the paper'}.",
                better))
    if {"Crops", "Tris", "mAPs"} <= have:
        cross = _mean(results, "Crops", "mAP")
        same = max(_mean(results, "Tris", "mAP"), _mean(results, "mAPs", "mAP"))
        complementary = cross > same
        findings.append(Finding(
            "ensembles",
            f"Combining the two losses (Crops, mAP {cross:.1f}) against combining crops and whole photos under one "
            f"loss (best of Tris/mAPs, mAP {same:.1f}): the losses {'are' if complementary else 'are not'} the more "
            f"complementary pair here{', as in the paper' if complementary else ', unlike the paper'}.",
            complementary))
    return findings


TITLES = {"cropping": "Does cropping the database help?", "losses": "Triplet loss or AP loss?",
          "ensembles": "Do the ensembles help?"}


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
