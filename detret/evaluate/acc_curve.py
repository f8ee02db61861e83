"""The Acc@K curve of an evaluation (K = 1..50, mean over categories), one line per run."""
from __future__ import annotations

from pathlib import Path
from typing import Dict

from ..utils.plotting import pyplot, save_png


def plot_acc_curve(path: Path, results: Dict[str, Dict]) -> None:
    """Acc@K for K = 1..50, averaged over categories, one line per run."""
    plt = pyplot()
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
    save_png(fig, path)
