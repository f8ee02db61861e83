"""`detret eval --dataset deepfashion2`: Recall@K of DeepFashion2 descriptor runs, both directions.

Reads ``<run_dir>/embed-df2-<name>/`` (see ``detret/embed/deepfashion2.py``) and writes
``<run_dir>/eval-df2/``: ``metrics.json`` (per run: ``consumer2shop`` and ``shop2consumer``,
each {"queries", "queries_without_match", "recall": {K: value}}) and ``table.md``.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

from omegaconf import DictConfig

from ..embed.deepfashion2 import DOMAINS, read_df2_descriptors
from ..runs.atomic import atomic_write_text
from ..runs.layout import METRICS_FILE, RunLayout
from ..runs.stage import Stage, require_fresh
from .deepfashion2 import DEFAULT_KS, recall_at_k
from .tables import markdown_table

DIRECTIONS = ("consumer2shop", "shop2consumer")
TABLE_FILE = "table.md"


def recall_table(results: Dict[str, Dict], ks: Sequence[int]) -> str:
    """Markdown: one row per direction and K, one column per run (Recall@K in %)."""
    names = list(results)
    rows = [[direction, str(k)] + ["" if v is None else f"{100 * v:.1f}"
                                   for v in (results[n][direction]["recall"][int(k)] for n in names)]
            for direction in DIRECTIONS for k in ks]
    return markdown_table(["Direction", "Recall@K"] + names, rows, numeric_from=2)


def run_eval_df2(pcfg: DictConfig, names: Sequence[str], *, ks: Sequence[int] = DEFAULT_KS,
                 force: bool = False, command: Optional[str] = None) -> Dict[str, Dict]:
    """The stage; returns the metrics per run (as metrics.json)."""
    layout = RunLayout(pcfg.run_dir)
    inputs = {}
    for n in names:
        folder = layout.embed_df2(n)
        require_fresh(folder, f"the DeepFashion2 descriptors '{n}' (detret embed --dataset deepfashion2)")
        inputs.update({f"{n}:{d}": folder / f"{d}.npy" for d in DOMAINS})
    stage = Stage(layout.eval_df2, "eval-df2", config={"runs": list(names), "ks": list(ks)}, inputs=inputs,
                  command=command, pipeline_config=pcfg)
    reused = stage.reuse_or_begin(force=force, summary_name=METRICS_FILE)
    if reused is not None:
        return reused
    results: Dict[str, Dict] = {}
    for n in names:
        c, citems = read_df2_descriptors(layout.embed_df2(n), "consumer")
        s, sitems = read_df2_descriptors(layout.embed_df2(n), "shop")
        results[n] = {"consumer2shop": recall_at_k(c, citems, s, sitems, ks),
                      "shop2consumer": recall_at_k(s, sitems, c, citems, ks)}
    atomic_write_text(stage.stage_dir / TABLE_FILE, recall_table(results, ks))
    return stage.finish(results, {"table": TABLE_FILE}, summary_name=METRICS_FILE)
