"""`detret eval-df2`: Recall@K of DeepFashion2 descriptor runs, both directions.

Reads ``<run_dir>/embed-df2-<name>/`` (see ``detret/embed/deepfashion2.py``) and writes
``<run_dir>/eval-df2/``: ``metrics.json`` (per run: ``consumer2shop`` and ``shop2consumer``,
each {"queries", "queries_without_match", "recall": {K: value}, "ci95": {K: [lo, hi]},
"levels": {attribute: {level: {"queries", "recall", "ci95"}}}, "breakdown_k"}) and ``table.md``
(Ibrahim et al.'s Tables 2 and 3: per run, Recall@20 per annotation level, Recall@K overall).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

from omegaconf import DictConfig

from ..embed.deepfashion2 import DOMAINS, read_df2_descriptors
from ..runs.atomic import atomic_write_text
from ..runs.layout import METRICS_FILE, RunLayout
from ..runs.stage import Stage, require_fresh
from .bootstrap import DEFAULT_RESAMPLES
from .deepfashion2 import BREAKDOWN_K, DEFAULT_KS, recall_at_k
from .tables import markdown_table, with_interval

DIRECTIONS = ("consumer2shop", "shop2consumer")
TABLE_FILE = "table.md"


def direction_table(results: Dict[str, Dict], direction: str, ks: Sequence[int]) -> str:
    """Ibrahim et al.'s Table 2 (consumer2shop) or 3 (shop2consumer) layout: one row per run, Recall@20 per
    annotation level, then Recall@K overall; values in %, 95% intervals in brackets."""
    names = list(results)
    first = results[names[0]][direction]
    columns = [(attribute, level) for attribute, levels in first["levels"].items() for level in levels]
    header = ["Run"] + [f"{a} {lvl}" for a, lvl in columns] + [f"R@{k}" for k in ks]
    rows = []
    for n in names:
        r = results[n][direction]
        ci = r.get("ci95") or {}
        cells = [with_interval(r["levels"][a].get(lvl, {}).get("recall"), r["levels"][a].get(lvl, {}).get("ci95"))
                 for a, lvl in columns]
        cells += [with_interval(_by_k(r["recall"], k), _by_k(ci, k)) for k in ks]
        rows.append([n] + cells)
    counts = ["queries"] + [str(first["levels"][a][lvl]["queries"]) for a, lvl in columns] + \
        [str(first["queries"] - first["queries_without_match"])] * len(ks)
    return markdown_table(header, rows + [counts], numeric_from=1)


def _by_k(mapping: Dict, k: int):
    """A Recall@K entry whether its key is K or, read back from JSON, "K"."""
    return mapping.get(int(k), mapping.get(str(k)))


def recall_markdown(results: Dict[str, Dict], ks: Sequence[int]) -> str:
    """table.md: both directions in Ibrahim et al.'s layout, with what the numbers are."""
    first = results[next(iter(results))][DIRECTIONS[0]]
    out = []
    for direction, table in zip(DIRECTIONS, ("Table 2", "Table 3")):
        out.append(f"## {direction} (Ibrahim et al.'s {table} layout)\n\n{direction_table(results, direction, ks)}")
    note = (f"Values in %: Recall@{first['breakdown_k']} of the queries at each annotation level of the query "
            "(DeepFashion2's scale, occlusion, zoom_in, viewpoint), then Recall@K over all queries with a match.")
    if first.get("ci95"):
        note += " In brackets: 95% bootstrap interval over queries."
    return "\n\n".join(out) + "\n\n" + note + "\n"


def run_eval_df2(pcfg: DictConfig, names: Sequence[str], *, ks: Sequence[int] = DEFAULT_KS,
                 bootstrap: int = DEFAULT_RESAMPLES, force: bool = False, command: Optional[str] = None
                 ) -> Dict[str, Dict]:
    """The stage; returns the metrics per run (as metrics.json)."""
    layout = RunLayout(pcfg.run_dir)
    inputs = {}
    for n in names:
        folder = layout.embed_df2(n)
        require_fresh(folder, f"the DeepFashion2 descriptors '{n}' (detret embed-df2)")
        inputs.update({f"{n}:{d}": folder / f"{d}.npy" for d in DOMAINS})
    config = {"runs": list(names), "ks": list(ks), "bootstrap": int(bootstrap), "seed": int(pcfg.seed),
              "breakdown_k": BREAKDOWN_K}
    stage = Stage(layout.eval_df2, "eval-df2", config=config, inputs=inputs, command=command, pipeline_config=pcfg)
    reused = stage.reuse_or_begin(force=force, summary_name=METRICS_FILE)
    if reused is not None:
        return reused
    results: Dict[str, Dict] = {}
    for n in names:
        c, citems = read_df2_descriptors(layout.embed_df2(n), "consumer")
        s, sitems = read_df2_descriptors(layout.embed_df2(n), "shop")
        results[n] = {"consumer2shop": recall_at_k(c, citems, s, sitems, ks, bootstrap=bootstrap, seed=pcfg.seed),
                      "shop2consumer": recall_at_k(s, sitems, c, citems, ks, bootstrap=bootstrap, seed=pcfg.seed)}
    atomic_write_text(stage.stage_dir / TABLE_FILE, recall_markdown(results, ks))
    return stage.finish(results, {"table": TABLE_FILE}, summary_name=METRICS_FILE)
