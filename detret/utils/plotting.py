"""The one matplotlib setup: a headless backend, and figures written atomically as PNG."""
from __future__ import annotations

from pathlib import Path


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (no display needed; the same pixels everywhere)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: Path) -> None:
    """Write `fig` to `path` as PNG (atomically: a kill never leaves half a file) and close it."""
    from ..runs.atomic import atomic_path

    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png")
    pyplot().close(fig)
