"""A reading of a recipe with foundation descriptors (``descriptors:``, e.g. ``--recipe zero-shot``): does
training pay on this data? Each trained model of the recipe against each foundation model used without
training, and each ensemble that joins the two kinds against its members, on mAP, Acc@1 and Acc@20 with
their paired 95% intervals (the same resampled queries for both runs). A difference within its interval is
called noise, never an effect.
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional

from ..config.recipes import Recipe
from .reading import Comparer, Finding, conclusion, each_metric, reading_markdown

TITLES = {"training": "Does training pay on this data?",
          "zero-shot ensembles": "Does a foundation model add to a trained one?"}


def read_zero_shot(results: Mapping[str, Dict], per_query: Optional[Mapping[str, Dict]], recipe: Recipe
                   ) -> List[Finding]:
    compare, have = Comparer(results, per_query), set(results)
    findings = []
    for d in (d for d in recipe.descriptors if d.name in have):
        for m in (m for m in recipe.models if m.name in have):
            said, _ = conclusion(compare(d.name, m.name, "mAP"), "training pays here (higher mAP)",
                                 "the foundation model is better here (higher mAP)", None)
            findings.append(Finding("training", f"{m.column} (trained) against {d.column} ({d.descriptor}, no "
                                    f"training): {each_metric(compare, d.name, m.name)} points: {said}.", None))
    foundations, trained = {d.name for d in recipe.descriptors}, {m.name for m in recipe.models}
    for e in recipe.ensembles:
        if e.name in have and set(e.members) & foundations and set(e.members) & trained:
            for member in (x for x in e.members if x in have):
                said, _ = conclusion(compare(member, e.name, "mAP"), "the ensemble is better",
                                     "the ensemble is worse", None)
                findings.append(Finding("zero-shot ensembles", f"{e.name} against its member {member}: "
                                        f"{each_metric(compare, member, e.name)} points: {said}.", None))
    return findings


def zero_shot_markdown(findings: List[Finding]) -> str:
    return reading_markdown(findings, TITLES, nothing="No trained model and foundation model were both evaluated.")
