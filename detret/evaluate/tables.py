"""Tables of the evaluation: Table 1's layout (categories by metric, one column per run), Markdown and CSV.

Markdown tables are written by :func:`markdown_table`, unpadded (``| a | b |``): they diff
line by line and stay readable in a terminal; tabulate would pad every cell to its column."""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Dict, List, Sequence

from ..runs.atomic import atomic_write_text


def _pct(v) -> str:
    return "" if v is None else f"{100 * v:.1f}"


def table_rows(results: Dict[str, Dict], ks: List[int]) -> List[List[str]]:
    """Rows [category, metric, run 1, run 2, ...]: categories by metric, one column per run."""
    runs = list(results)
    metrics = ["mAP"] + [f"Acc@{k}" for k in ks]
    cats = sorted({c for r in results.values() for c in r["per_category"]})
    rows = []
    for cat in cats + ["mean over categories", "mean over queries"]:
        for m in metrics:
            values = []
            for run in runs:
                r = results[run]
                src = r["per_category"].get(cat) if cat in r["per_category"] else (
                    r["mean_over_categories"] if cat == "mean over categories" else
                    r["mean_over_queries"] if cat == "mean over queries" else None)
                values.append(_pct(src.get(m)) if src else "")
            rows.append([cat, m] + values)
    return rows


def counts_rows(results: Dict[str, Dict]) -> List[List[str]]:
    first = next(iter(results.values()))
    return [[cat, str(r["queries"]), str(r["queries_without_positive"]), str(r.get("queries_unreadable", 0)),
             str(r["gallery"]), str(r.get("gallery_unreadable", 0))]
            for cat, r in sorted(first["per_category"].items())]


COUNTS_HEADER = ["category", "queries", "without positive (excluded)", "unreadable queries (excluded)",
                 "gallery photos", "unreadable gallery photos (left out)"]


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric_from: int) -> str:
    """A Markdown table; columns from ``numeric_from`` on are right-aligned (numbers)."""
    align = ["---"] * numeric_from + ["---:"] * (len(header) - numeric_from)

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cells) + " |\n"

    return line(header) + "|" + "|".join(align) + "|\n" + "".join(line(r) for r in rows)


def markdown(results: Dict[str, Dict], ks: List[int]) -> str:
    table = markdown_table(["Category", "Metric"] + list(results), table_rows(results, ks), numeric_from=2)
    counts_header = [COUNTS_HEADER[0].capitalize()] + COUNTS_HEADER[1:]
    return (table + "\nValues in %. mAP over the whole category gallery (eq. 4); Acc@K (eq. 6).\n\n"
            + markdown_table(counts_header, counts_rows(results), numeric_from=1))


def write_tables(folder: Path, results: Dict[str, Dict], ks: List[int]) -> None:
    atomic_write_text(folder / "table.md", markdown(results, ks))
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["category", "metric"] + list(results))
    writer.writerows(table_rows(results, ks))
    atomic_write_text(folder / "table.csv", buf.getvalue())
