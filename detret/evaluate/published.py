"""The paper's Tables 2 and 3: our best single run and best ensemble beside the published numbers.

Table 2 (Kucer & Murray 2019): per category Acc@20 of the best single model and the best ensemble, beside
Wang et al. 2016, Kucer & Murray's own, Kiapour et al. 2015 and Morelli et al. 2021; Table 3: the subset
dresses, outerwear, skirts, tops, beside the methods that only used those. The published numbers are
data (``detret/resources/published_street2shop.json``, each column with its citation and the table it
was printed in). They are measurements on the real Exact Street2Shop: every published column's header
says "published", their averages are the papers' own (never computed here, never mixed with ours), and
on synthetic data the page says the two are not comparable.

"Best" is the best mean mAP over categories (the paper's headline metric), among this evaluation's runs:
ensembles are the runs built by ``combine``, re-ranked runs are neither.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from ..search.rerank import split_reranked
from .tables import markdown_table, with_interval

METRIC = "Acc@20"


def published() -> Dict:
    """The published tables (see the module docstring)."""
    return json.loads(resources.files("detret.resources").joinpath("published_street2shop.json").read_text())


def best_runs(results: Mapping[str, Dict], ensembles: Sequence[str]) -> Tuple[Optional[str], Optional[str]]:
    """(best single run, best ensemble) by mean mAP over categories; None where there is none."""
    def best(names: List[str]) -> Optional[str]:
        scored = [n for n in names if results[n]["mean_over_categories"].get("mAP") is not None]
        return max(scored, key=lambda n: results[n]["mean_over_categories"]["mAP"]) if scored else None

    plain = [n for n in results if not split_reranked(n)[1]]
    return best([n for n in plain if n not in ensembles]), best([n for n in plain if n in ensembles])


def _ours(result: Dict, category: Optional[str]) -> str:
    """Our Acc@20 of a category (None: the mean over categories) in %, with its interval."""
    ci = result.get("ci95") or {}
    if category is None:
        return with_interval(result["mean_over_categories"].get(METRIC), ci.get("mean_over_categories", {}).get(METRIC))
    row = result["per_category"].get(category) or {}
    return with_interval(row.get(METRIC), ci.get("per_category", {}).get(category, {}).get(METRIC))


def _published(value: Optional[float]) -> str:
    return "" if value is None else f"{value:.1f}"


@dataclass(frozen=True)
class ComparisonTable:
    """One of the paper's Tables 2 and 3 filled for this evaluation: the page and table2.md show it."""
    title: str
    header: List[str]
    rows: List[List[str]]
    notes: List[str]  # what the numbers are, then one citation per published column

    def markdown(self) -> str:
        return (f"{self.title}\n\n" + markdown_table(self.header, self.rows, numeric_from=1) + "\n"
                + self.notes[0] + "\n\n" + "".join(f"- {n}\n" for n in self.notes[1:]))


def comparison_table(results: Mapping[str, Dict], ensembles: Sequence[str], table: str = "table2",
                     synthetic: bool = False) -> Optional[ComparisonTable]:
    """Table 2 (or ``table="table3"``) for this evaluation, or None without Acc@20."""
    if not results or METRIC not in next(iter(results.values()))["mean_over_categories"]:
        return None
    spec = published()[table]
    single, ensemble = best_runs(results, ensembles)
    where = "synthetic data" if synthetic else "this evaluation's data"
    ours = [(f"ours: best model ({single}, {where})", results[single])] if single else []
    ours += [(f"ours: best ensemble ({ensemble}, {where})", results[ensemble])] if ensemble else []
    header = ["Category"] + [name for name, _ in ours] + [f"published: {c['name']}" for c in spec["columns"]]
    rows = [[cat] + [_ours(r, cat) for _, r in ours] + [_published(c["values"].get(cat)) for c in spec["columns"]]
            for cat in spec["categories"]]
    if table == "table2":
        rows.append(["average over categories"] + [_ours(r, None) for _, r in ours]
                    + [_published(c.get("average")) for c in spec["columns"]])
    note = (f"Ours: {METRIC} in % with its 95% interval, on {where}. Published: the papers' numbers on the real "
            "Exact Street2Shop, their averages as printed (never averaged with ours).")
    if synthetic:
        note += " Ours come from the embedded synthetic data: they are not comparable with the published columns."
    sources = [f"{c['name']}: {c['citation']} Printed in {c['printed_in']}." for c in spec["columns"]]
    return ComparisonTable(spec["title"], header, rows, [note] + sources)


def comparison_tables(results: Mapping[str, Dict], ensembles: Sequence[str], synthetic: bool
                      ) -> List[ComparisonTable]:
    """Tables 2 and 3, or none when the evaluation has no Acc@20."""
    tables = [comparison_table(results, ensembles, t, synthetic) for t in ("table2", "table3")]
    return [t for t in tables if t is not None]
