"""`detret eval`: Table 1 of the paper for one or several descriptor runs, side by side.

Writes ``<run_dir>/eval/``: ``metrics.json`` (per run: per category and averaged
mAP, Acc@K, query and gallery counts, queries without positive, Acc@K curve),
``table.md`` and ``table.csv`` (categories by metric, one column per run), and with
``--bootstrap N`` (1,000 by default) each metric's 95% interval under ``ci95`` in metrics.json,
``acc_at_k.png``.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, Optional, Sequence

from omegaconf import DictConfig

from ..embed.artifact import read_descriptors, read_skipped
from ..errors import InputError
from ..runs.layout import METRICS_FILE, RunLayout
from ..runs.stage import Stage, require_fresh
from .acc_curve import plot_acc_curve
from .bootstrap import DEFAULT_RESAMPLES
from .protocol import DEFAULT_KS, evaluate_descriptors
from .tables import write_tables

logger = logging.getLogger(__name__)


def add_unreadable_counts(result: Dict, skipped: Sequence[Dict]) -> None:
    """Photos the descriptor run could not read are excluded from the metrics (they have no
    descriptor); each category records how many: ``queries_unreadable``, ``gallery_unreadable``,
    and the run's totals under ``unreadable``."""
    counts: Dict[tuple, int] = {}
    for s in skipped:
        key = (s.get("side", "gallery"), s["category"])
        counts[key] = counts.get(key, 0) + 1
    for cat, row in result["per_category"].items():
        row["queries_unreadable"] = counts.get(("queries", cat), 0)
        row["gallery_unreadable"] = counts.get(("gallery", cat), 0)
    result["unreadable"] = {side: sum(n for (s, _), n in counts.items() if s == side)
                            for side in ("gallery", "queries")}


def _descriptor_inputs(layout: RunLayout, names: Sequence[str]) -> Dict[str, Path]:
    inputs = {}
    for name in names:
        folder = layout.embed(name)
        require_fresh(folder, f"the descriptors '{name}' (detret embed)")
        for side in ("gallery", "queries"):
            inputs[f"{name}:{side}"] = folder / f"{side}.npy"
            inputs[f"{name}:{side}_rows"] = folder / f"{side}_rows.jsonl"
    return inputs


def evaluate_run(folder: Path, ks: Sequence[int], bootstrap: int = 0, seed: int = 0) -> Dict:
    """Table 1's metrics of one descriptor run (``embed-<name>``), unreadable photos counted; with
    ``bootstrap`` resamples, their 95% intervals (the same resampled queries for every run of a seed)."""
    gallery, grows = read_descriptors(folder, "gallery")
    queries, qrows = read_descriptors(folder, "queries")
    result = evaluate_descriptors(gallery, grows, queries, qrows, ks, bootstrap, seed)
    add_unreadable_counts(result, read_skipped(folder))
    return result


def run_eval(pcfg: DictConfig, names: Sequence[str], *, ks: Sequence[int] = DEFAULT_KS, out_name: str = "eval",
             bootstrap: int = DEFAULT_RESAMPLES, force: bool = False, command: Optional[str] = None
             ) -> Dict[str, Dict]:
    """The stage; returns the metrics per run (as ``metrics.json``). ``out_name``: another folder than ``eval``;
    ``bootstrap``: resamples of the 95% intervals (0: none), seeded by the pipeline's seed."""
    layout = RunLayout(pcfg.run_dir)
    names = list(names) or layout.descriptor_runs()
    if not names:
        raise InputError(f"{layout.run_dir}: no descriptors to evaluate; run detret embed first")
    ks = sorted(set(int(k) for k in ks))
    if not ks or ks[0] < 1:
        raise InputError(f"K values must be positive integers, got {list(ks)}")
    if bootstrap < 0:
        raise InputError(f"--bootstrap must be 0 (no intervals) or a number of resamples, got {bootstrap}")
    config = {"runs": list(names), "ks": ks, "bootstrap": int(bootstrap), "seed": int(pcfg.seed)}
    stage = Stage(layout.run_dir / out_name, "eval", config=config,
                  inputs=_descriptor_inputs(layout, names), command=command, pipeline_config=pcfg)
    reused = stage.reuse_or_begin(force=force, summary_name=METRICS_FILE)
    if reused is not None:
        return reused
    results = {name: evaluate_run(layout.embed(name), ks, bootstrap, int(pcfg.seed)) for name in names}
    write_tables(stage.stage_dir, results, ks)
    plot_acc_curve(stage.stage_dir / "acc_at_k.png", results)
    return stage.finish(results, {"table_md": "table.md", "table_csv": "table.csv", "acc_curve": "acc_at_k.png"},
                        summary_name=METRICS_FILE)
