"""`detret eval`: Table 1 of the paper for one or several descriptor runs, side by side.

Writes ``<run_dir>/eval/``: ``metrics.json`` (per run: per category and averaged
mAP, Acc@K, query and gallery counts, queries without positive, Acc@K curve),
``table.md`` and ``table.csv`` (categories by metric, one column per run),
``acc_at_k.png``.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Dict, Optional, Sequence

from omegaconf import DictConfig

from ..embed.artifact import read_descriptors, read_skipped
from ..runs.atomic import atomic_write_json
from ..runs.stage import Stage, require_fresh
from .protocol import DEFAULT_KS, evaluate_descriptors
from .report import plot_acc_curve, write_tables

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


def run_eval(pcfg: DictConfig, names: Sequence[str], *, ks: Sequence[int] = DEFAULT_KS, out_name: str = "eval",
             force: bool = False, command: Optional[str] = None) -> Dict[str, Dict]:
    run_dir = Path(pcfg.run_dir)
    if not names:
        found = sorted(p.name[len("embed-"):] for p in run_dir.glob("embed-*") if p.is_dir())
        if not found:
            raise ValueError(f"{run_dir}: no descriptors to evaluate; run detret embed first")
        names = found
    ks = sorted(set(int(k) for k in ks))
    if not ks or ks[0] < 1:
        raise ValueError(f"K values must be positive integers, got {list(ks)}")
    inputs = {}
    for name in names:
        folder = run_dir / f"embed-{name}"
        require_fresh(folder, f"the descriptors '{name}' (detret embed)")
        for side in ("gallery", "queries"):
            inputs[f"{name}:{side}"] = folder / f"{side}.npy"
            inputs[f"{name}:{side}_rows"] = folder / f"{side}_rows.jsonl"
    out = run_dir / out_name
    stage = Stage(out, "eval", config={"runs": list(names), "ks": ks}, inputs=inputs,
                  command=command, pipeline_config=pcfg)
    if stage.begin(force=force) == "done":
        return json.loads((out / "metrics.json").read_text())
    results = {}
    for name in names:
        folder = run_dir / f"embed-{name}"
        gallery, grows = read_descriptors(folder, "gallery")
        queries, qrows = read_descriptors(folder, "queries")
        results[name] = evaluate_descriptors(gallery, grows, queries, qrows, ks)
        add_unreadable_counts(results[name], read_skipped(folder))
    atomic_write_json(out / "metrics.json", results)
    write_tables(out, results, ks)
    plot_acc_curve(out / "acc_at_k.png", results)
    stage.complete({"metrics": "metrics.json", "table_md": "table.md", "table_csv": "table.csv",
                    "acc_curve": "acc_at_k.png"})
    return results
