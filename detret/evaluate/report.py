"""Tables and figures of the evaluation: Table 1's layout, Markdown, CSV, Acc@K curve."""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Dict, List

from ..runs.atomic import atomic_path, atomic_write_text


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


def markdown(results: Dict[str, Dict], ks: List[int]) -> str:
    runs = list(results)
    out = io.StringIO()
    out.write("| Category | Metric | " + " | ".join(runs) + " |\n")
    out.write("|---|---|" + "---:|" * len(runs) + "\n")
    for row in table_rows(results, ks):
        out.write("| " + " | ".join(row) + " |\n")
    out.write("\nValues in %. mAP over the whole category gallery (eq. 4); Acc@K (eq. 6).\n\n")
    out.write("| " + " | ".join(c.capitalize() if i == 0 else c for i, c in enumerate(COUNTS_HEADER)) + " |\n")
    out.write("|---|" + "---:|" * (len(COUNTS_HEADER) - 1) + "\n")
    for row in counts_rows(results):
        out.write("| " + " | ".join(row) + " |\n")
    return out.getvalue()


def write_tables(folder: Path, results: Dict[str, Dict], ks: List[int]) -> None:
    atomic_write_text(folder / "table.md", markdown(results, ks))
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["category", "metric"] + list(results))
    writer.writerows(table_rows(results, ks))
    atomic_write_text(folder / "table.csv", buf.getvalue())


def plot_acc_curve(path: Path, results: Dict[str, Dict]) -> None:
    """Acc@K for K = 1..50, averaged over categories, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for run, r in results.items():
        curve = r.get("acc_curve") or []
        ax.plot(range(1, len(curve) + 1), [100 * v for v in curve], label=run)
    ax.set_xlabel("K")
    ax.set_ylabel("Acc@K (%), mean over categories")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
