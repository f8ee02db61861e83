"""The report page: one self-contained HTML file (figures inlined as data: URIs, no script,
no network), so it opens from disk, can be mailed, and renders the same everywhere.

Built with the standard library's ``html.escape`` rather than a template engine:
the page is a handful of tables and images, and every value passes through
:func:`_e` or :func:`_table`, which escape it.
"""
from __future__ import annotations

import base64
import re
from html import escape
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

from ..evaluate.tables import COUNTS_HEADER

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0; font-size: .85em; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: right; }
th:first-child, td:first-child, td.text { text-align: left; }
tr.mean td { font-weight: bold; background: #f4f4f4; }
img { max-width: 100%; border: 1px solid #eee; }
figure { margin: 1em 0; } figcaption { font-size: .85em; color: #555; }
.agree { color: #1a9850; } .disagree { color: #d73027; }
code { font-size: .85em; background: #f6f6f6; padding: 0 .2em; }
.wide { overflow-x: auto; }
.ci { display: block; font-size: .75em; color: #777; white-space: nowrap; }
"""
_WITH_INTERVAL = re.compile(r"^(\S+) (\[[^\]]*\])$")  # "24.3 [22.1, 26.5]" (detret.evaluate.tables)


def _e(value) -> str:
    return escape("" if value is None else str(value))


def _number(value) -> str:
    """A numeric cell; a value with its interval shows the interval small, on a line of its own."""
    match = _WITH_INTERVAL.match(str(value)) if value is not None else None
    if match:
        return f'{_e(match.group(1))}<span class="ci">{_e(match.group(2))}</span>'
    return _e(value)


def _table(header: Sequence[str], rows: Iterable[Sequence], table_id: str = "", row_classes: Optional[List[str]] = None,
           text_columns: int = 1) -> str:
    """A table; the first ``text_columns`` columns are left-aligned text, the others numbers."""
    id_attr = f' id="{_e(table_id)}"' if table_id else ""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    out = [f'<div class="wide"><table{id_attr}>', f"<thead><tr>{head}</tr></thead><tbody>"]
    for i, row in enumerate(rows):
        cls = row_classes[i] if row_classes else ""
        cells = "".join((f'<td class="text">{_e(v)}</td>' if j < text_columns else f"<td>{_number(v)}</td>")
                        for j, v in enumerate(row))
        out.append((f'<tr class="{_e(cls)}">' if cls else "<tr>") + cells + "</tr>")
    out.append("</tbody></table></div>")  # a table wider than the page scrolls within it
    return "\n".join(out)


def _figure(png: Path, caption: str, fig_id: str) -> str:
    data = base64.b64encode(Path(png).read_bytes()).decode("ascii")
    return (f'<figure id="{_e(fig_id)}"><img alt="{_e(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def build_page(*, title: str, run_dir: Path, table_header: Sequence[str], table_rows: List[List[str]],
               counts_rows: List[List[str]], findings: Sequence, figures: Sequence[tuple],
               fallback_rows: List[List[str]], manifest_rows: List[List[str]], versions: Dict[str, str],
               paper_rows: Optional[List[List[str]]] = None, timings: Optional[List[Dict]] = None,
               comparisons: Sequence = ()) -> str:
    """The whole page. ``figures``: (png path, caption, id) in display order; ``comparisons``: the paper's
    Tables 2 and 3 (:class:`detret.evaluate.published.ComparisonTable`)."""
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f"<p>Run directory <code>{_e(run_dir)}</code>. Street-to-shop retrieval within category, detect-then-retrieve "
        "(Kucer &amp; Murray, CVPR-W 2019).</p>",
        "<h2>Table 1: retrieval per category (%)</h2>",
        _table(table_header, table_rows, "table1",
               row_classes=["mean" if r[0].startswith("mean") else "" for r in table_rows], text_columns=2),
        "<p>mAP over the whole category gallery (eq. 4); Acc@K: a matching shop photo among the top K (eq. 6). "
        "Queries without a matching shop photo are excluded (counted below).</p>",
        _table(COUNTS_HEADER, counts_rows, "counts"),
    ]
    if paper_rows:
        parts += ["<p>For comparison, the paper's Table 1 on the real Exact Street2Shop (ResNet-50 from ImageNet, "
                  "800 px, X101 detector), mean over categories (%):</p>",
                  _table(["metric"] + list(table_header[2:]), paper_rows, "paper")]
    parts += [
        "<h2>Reading</h2>",
    ]
    if findings:
        parts.append("<ul id=\"reading\">")
        for f in findings:
            cls = "" if f.agrees_with_paper is None else ("agree" if f.agrees_with_paper else "disagree")
            parts.append(f'<li class="{cls}">{_e(f.text)}</li>')
        parts.append("</ul>")
    else:
        parts.append('<p id="reading">This run does not hold the paper\'s pairs of models to compare.</p>')
    for n, table in enumerate(comparisons, start=2):
        parts += [f"<h2>{_e(table.title)}</h2>", _table(table.header, table.rows, f"table{n}",
                                                        row_classes=["mean" if r[0].startswith("average") else ""
                                                                     for r in table.rows]),
                  f"<p>{_e(table.notes[0])}</p>", "<ul>" + "".join(f"<li>{_e(n)}</li>" for n in table.notes[1:])
                  + "</ul>"]
    parts.append("<h2>Figures</h2>")
    parts.extend(_figure(png, caption, fig_id) for png, caption, fig_id in figures)
    if fallback_rows:
        parts.append("<h2>Crop policy on shop photos</h2>")
        parts.append(_table(["category", "photos", "skipped", "detection", "fallback", "fallback rate",
                             "crop covers the product (IoU >= 0.5 with it or one shoe of a pair; synthetic data)"],
                            fallback_rows, "fallback"))
    if timings:
        parts.append("<h2>Time per step</h2>")
        parts.append(_table(["step", "status", "seconds", "command"],
                            [[t["step"], t["status"], f"{t.get('seconds_when_run', t['seconds']):.1f}", t["command"]]
                             for t in timings], "timings"))
    parts.append("<h2>Manifest</h2>")
    parts.append(_table(["stage", "state", "git revision", "command"], manifest_rows, "manifest", text_columns=4))
    parts.append("<p>Versions: " + ", ".join(f"{_e(k)} {_e(v)}" for k, v in sorted(versions.items())) + "</p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
