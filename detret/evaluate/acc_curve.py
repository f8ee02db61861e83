"""The Acc@K curve of an evaluation (K = 1..50, mean over categories), one line per run, with its 95% band."""
from __future__ import annotations

from pathlib import Path
from typing import Dict

from ..utils.plotting import pyplot, save_png


def plot_acc_curve(path: Path, results: Dict[str, Dict]) -> None:
    """Acc@K for K = 1..50, averaged over categories, one line per run; shaded: the 95% bootstrap interval
    of each K (``ci95.acc_curve`` of metrics.json) where the evaluation has one."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for run, r in results.items():
        curve = r.get("acc_curve") or []
        ks = range(1, len(curve) + 1)
        line, = ax.plot(ks, [100 * v for v in curve], label=run)
        band = (r.get("ci95") or {}).get("acc_curve")
        if band and len(band) == len(curve):
            ax.fill_between(ks, [100 * lo for lo, _ in band], [100 * hi for _, hi in band], color=line.get_color(),
                            alpha=0.15, linewidth=0)
    ax.set_xlabel("K")
    ax.set_ylabel("Acc@K (%), mean over categories")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_png(fig, path)
