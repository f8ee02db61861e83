"""The report's figures, drawn with matplotlib from plain inputs (arrays, dicts).

- :func:`plot_detections`: photos with the detector's boxes and the chosen crop
  with its rule (the paper's Figure 4);
- :func:`plot_retrieval_examples`: a query with its box, then its top results
  framed green (same product) or red (another product) (the paper's Figure 5);
- :func:`plot_category_bars`: mAP / Acc@1 / Acc@20 per category, one bar per run;
- :func:`plot_fallback_rates`: the share of shop photos whose crop fell back to
  the whole photo, per category.

Every function writes one PNG atomically and returns nothing; none reads files,
so each can be tested with arrays made in the test.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..data.boxes import BoxXYXY
from ..utils.plotting import pyplot, save_png

MATCH_COLOUR = "#1a9850"
MISMATCH_COLOUR = "#d73027"
NEUTRAL_COLOUR = "#999999"  # a user's query: whether a result matches is unknown
QUERY_BOX_COLOUR = "#ffd700"
CROP_COLOUR = "#00e5ff"


def _rect(ax, box: BoxXYXY, colour: str, width: float, style: str = "-") -> None:
    from matplotlib.patches import Rectangle

    x0, y0, x1, y1 = box
    ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour, linewidth=width,
                           linestyle=style))


def _frame(ax, colour: Optional[str], width: float = 5.0) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(colour is not None)
        if colour is not None:
            spine.set_edgecolor(colour)
            spine.set_linewidth(width)


@dataclass
class DetectionPanel:
    rgb: np.ndarray                                   # [H, W, 3] uint8
    title: str                                        # e.g. "shop 123 · bags"
    detections: List[Tuple[BoxXYXY, str, float]] = field(default_factory=list)  # (box, label, score)
    crop: Optional[BoxXYXY] = None
    rule: str = ""


def plot_detections(path: Path, panels: Sequence[DetectionPanel], columns: int = 4) -> None:
    """Figure 4: every panel's detections (thin, labelled) and the chosen crop (thick, with its rule)."""
    plt = pyplot()
    rows = max(1, -(-len(panels) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 4.2 * rows), dpi=90, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, panel in zip(axes.ravel(), panels):
        ax.axis("on")
        ax.imshow(panel.rgb)
        for box, label, score in panel.detections:
            _rect(ax, box, "white", 1.0, "--")
            ax.text(box[0], box[1], f"{label} {score:.2f}", fontsize=6, color="black", va="bottom",
                    bbox={"facecolor": "white", "alpha": 0.7, "pad": 1, "linewidth": 0})
        if panel.crop is not None:
            _rect(ax, panel.crop, CROP_COLOUR, 3.0)
        ax.set_title(f"{panel.title}\ncrop: {panel.rule}", fontsize=8)
        _frame(ax, None)
    fig.tight_layout()
    save_png(fig, path)


@dataclass
class RetrievalExample:
    query_rgb: np.ndarray
    query_box: Optional[BoxXYXY]
    title: str                                        # e.g. "dresses · product 1132"
    # (shop photo, its crop box or None, same product? (None: unknown), score), best first
    results: List[Tuple[np.ndarray, Optional[BoxXYXY], Optional[bool], float]]


def plot_retrieval_examples(path: Path, examples: Sequence[RetrievalExample]) -> None:
    """Figure 5: one row per query: the street photo with its box, then its top results (crop boxes in cyan)."""
    plt = pyplot()
    n_cols = 1 + max((len(e.results) for e in examples), default=0)
    n_rows = max(1, len(examples))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.6 * n_cols, 2.2 * n_rows), dpi=90, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for row, example in zip(axes, examples):
        row[0].axis("on")
        row[0].imshow(example.query_rgb)
        if example.query_box is not None:
            _rect(row[0], example.query_box, QUERY_BOX_COLOUR, 2.0)
        row[0].set_title(example.title, fontsize=7)
        _frame(row[0], None)
        for rank, (ax, (rgb, box, match, score)) in enumerate(zip(row[1:], example.results), start=1):
            ax.axis("on")
            ax.imshow(rgb)
            if box is not None:
                _rect(ax, box, CROP_COLOUR, 1.5)
            ax.set_title(f"#{rank} {score:.3f}", fontsize=7)
            _frame(ax, NEUTRAL_COLOUR if match is None else MATCH_COLOUR if match else MISMATCH_COLOUR)
    fig.tight_layout()
    save_png(fig, path)


def _bar_errors(result: Dict, cats: Sequence[str], metric: str, values: Sequence[float]) -> Optional[np.ndarray]:
    """[2, n] distances from each bar's value (%) down and up to its 95% interval, or None without intervals."""
    ci = result.get("ci95")
    if not ci:
        return None
    bounds = [ci["per_category"].get(c, {}).get(metric) for c in cats] + [ci["mean_over_categories"].get(metric)]
    lo = [v if b is None else 100 * b[0] for v, b in zip(values, bounds)]
    hi = [v if b is None else 100 * b[1] for v, b in zip(values, bounds)]
    return np.clip(np.array([np.subtract(values, lo), np.subtract(hi, values)]), 0, None)


def plot_category_bars(path: Path, results: Mapping[str, Dict], metrics: Sequence[str] = ("mAP", "Acc@1", "Acc@20")
                       ) -> None:
    """One panel per metric: categories on x, one bar per run, values in %, whiskers: 95% intervals."""
    plt = pyplot()
    runs = list(results)
    cats = sorted({c for r in results.values() for c in r["per_category"]})
    fig, axes = plt.subplots(len(metrics), 1, figsize=(max(8.0, 0.9 * len(cats) * max(1, len(runs)) / 4),
                                                       3.2 * len(metrics)), dpi=90, squeeze=False)
    width = 0.8 / max(1, len(runs))
    x = np.arange(len(cats) + 1)
    for ax, metric in zip(axes[:, 0], metrics):
        for j, run in enumerate(runs):
            per_cat = results[run]["per_category"]
            values = [100 * (per_cat.get(c, {}).get(metric) or 0.0) for c in cats]
            values.append(100 * (results[run]["mean_over_categories"].get(metric) or 0.0))
            ax.bar(x - 0.4 + width * (j + 0.5), values, width, label=run,
                   yerr=_bar_errors(results[run], cats, metric, values), error_kw={"elinewidth": 0.7, "capsize": 1.5})
        ax.set_xticks(x)
        ax.set_xticklabels(cats + ["mean"], fontsize=8)
        ax.set_ylabel(f"{metric} (%)")
        ax.set_ylim(0, 100)
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(fontsize=7, ncol=min(len(runs), 8), loc="upper left")
    fig.tight_layout()
    save_png(fig, path)


def plot_fallback_rates(path: Path, summary: Mapping[str, Dict]) -> None:
    """Bars of the crop policy's fallback rate per category (detect-shop's summary.json)."""
    plt = pyplot()
    cats = sorted(c for c, row in summary.items() if row.get("fallback_rate") is not None)
    rates = [100 * summary[c]["fallback_rate"] for c in cats]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(cats)), 3.2), dpi=90)
    ax.bar(np.arange(len(cats)), rates, color="#fc8d59")
    ax.set_xticks(np.arange(len(cats)))
    ax.set_xticklabels(cats, fontsize=8)
    ax.set_ylabel("whole-photo fallback (%)")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    save_png(fig, path)
