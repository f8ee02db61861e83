"""Tables of the evaluation: Table 1's layout (categories by metric, one column per run), Markdown and CSV.

A cell of table.md is the value in % and, when the evaluation bootstrapped, its 95% interval in brackets
(``24.3 [22.1, 26.5]``: percentile intervals are not symmetric, so no "±"); table.csv gives each run three
columns, ``<run>``, ``<run> ci95 lo``, ``<run> ci95 hi``.

Markdown tables are written by :func:`markdown_table`, unpadded (``| a | b |``): they diff
line by line and stay readable in a terminal; tabulate would pad every cell to its column."""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..runs.atomic import atomic_write_text


def _pct(v) -> str:
    return "" if v is None else f"{100 * v:.1f}"


def metric_label(metric: str, protocol: str = "category") -> str:
    """Acc@K is called Recall@K under the protocol all (Morelli et al.'s name; the same measure)."""
    return metric.replace("Acc@", "Recall@") if protocol == "all" else metric


def _value_and_interval(result: Dict, group: str, metric: str) -> Tuple[Optional[float], Optional[List[float]]]:
    """(value, [lo, hi] or None) of a metric for a category or "mean over categories" / "mean over queries"."""
    ci = result.get("ci95") or {}
    if group == "mean over categories":
        return result["mean_over_categories"].get(metric), ci.get("mean_over_categories", {}).get(metric)
    if group == "mean over queries":
        return result["mean_over_queries"].get(metric), ci.get("mean_over_queries", {}).get(metric)
    row = result["per_category"].get(group)
    return (row.get(metric) if row else None), ci.get("per_category", {}).get(group, {}).get(metric)


def with_interval(value: Optional[float], ci: Optional[Sequence[float]]) -> str:
    """"24.3 [22.1, 26.5]": the value and its 95% interval in %; the value alone without one."""
    if value is None:
        return ""
    return _pct(value) if not ci else f"{_pct(value)} [{_pct(ci[0])}, {_pct(ci[1])}]"


def table_groups(results: Dict[str, Dict]) -> List[str]:
    return sorted({c for r in results.values() for c in r["per_category"]}) + ["mean over categories",
                                                                               "mean over queries"]


def table_rows(results: Dict[str, Dict], ks: List[int]) -> List[List[str]]:
    """Rows [category, metric, run 1, run 2, ...]: categories by metric, one column per run; each cell the
    value in % with its 95% interval when the evaluation has one."""
    metrics = ["mAP"] + [f"Acc@{k}" for k in ks]
    protocol = next(iter(results.values())).get("protocol", "category")
    rows = []
    for group in table_groups(results):
        for m in metrics:
            cells = [_value_and_interval(results[run], group, m) for run in results]
            rows.append([group, metric_label(m, protocol)]
                        + [with_interval(v, ci) for v, ci in cells])
    return rows


def means_rows(results: Dict[str, Dict], ks: List[int]) -> Tuple[List[str], List[List[str]]]:
    """(header, rows): one row per run, its means over categories with their intervals; narrow enough for a
    terminal however many runs there are (Table 1's layout transposed, means only)."""
    metrics = ["mAP"] + [f"Acc@{k}" for k in ks]
    protocol = next(iter(results.values())).get("protocol", "category")
    header = ["run"] + [metric_label(m, protocol) for m in metrics]
    rows = [[run] + [with_interval(*_value_and_interval(r, "mean over categories", m)) for m in metrics]
            for run, r in results.items()]
    return header, rows


def csv_rows(results: Dict[str, Dict], ks: List[int]) -> Tuple[List[str], List[List[str]]]:
    """(header, rows) of table.csv: per run three columns, the value and its interval's bounds (%)."""
    header = ["category", "metric"] + [f"{run}{part}" for run in results for part in ("", " ci95 lo", " ci95 hi")]
    protocol = next(iter(results.values())).get("protocol", "category")
    rows = []
    for group in table_groups(results):
        for m in ["mAP"] + [f"Acc@{k}" for k in ks]:
            row = [group, metric_label(m, protocol)]
            for run in results:
                value, ci = _value_and_interval(results[run], group, m)
                row += [_pct(value), _pct(ci[0]) if ci else "", _pct(ci[1]) if ci else ""]
            rows.append(row)
    return header, rows


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


def table_note(results: Dict[str, Dict]) -> str:
    """What the table's numbers are: protocol, metrics, intervals."""
    first = next(iter(results.values()))
    ci = first.get("ci95")
    gallery = ("every shop photo (protocol all, Recall@K = Acc@K)" if first.get("protocol") == "all"
               else "the whole category gallery")
    note = f"Values in %. mAP over {gallery} (eq. 4); Acc@K (eq. 6)."
    if ci:
        note += (f" In brackets: 95% bootstrap interval over queries ({ci['resamples']} resamples within each "
                 f"category, seed {ci['seed']}).")
    return note


def markdown(results: Dict[str, Dict], ks: List[int]) -> str:
    table = markdown_table(["Category", "Metric"] + list(results), table_rows(results, ks), numeric_from=2)
    counts_header = [COUNTS_HEADER[0].capitalize()] + COUNTS_HEADER[1:]
    return (table + "\n" + table_note(results) + "\n\n"
            + markdown_table(counts_header, counts_rows(results), numeric_from=1))


def write_tables(folder: Path, results: Dict[str, Dict], ks: List[int]) -> None:
    atomic_write_text(folder / "table.md", markdown(results, ks))
    buf = io.StringIO()
    writer = csv.writer(buf)
    header, rows = csv_rows(results, ks)
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_text(folder / "table.csv", buf.getvalue())
