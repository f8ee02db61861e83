"""`detret eval`: Table 1 of the paper for one or several runs, side by side.

A run is a descriptor run (``embed-<name>``) or a re-ranked one (``<name>+aqe``, searched by ``detret
search <name> --rerank aqe``). Writes ``<run_dir>/eval/`` (``--protocol all``: ``eval-all/``):
``metrics.json`` (per run: per category and averaged mAP, Acc@K, query and gallery counts, queries
without positive, Acc@K curve, and with ``--bootstrap N`` (1,000 by default) each metric's 95%
interval under ``ci95``), ``table.md`` and ``table.csv`` (categories by metric, one column per run,
intervals beside the values), ``table2.md`` (the paper's Tables 2 and 3: the best single run and
ensemble beside the published numbers, :mod:`detret.evaluate.published`), ``acc_at_k.png`` (with the
intervals' band) and ``per_query.json``
(per run and category, the scored queries' keys [photo_id, record], AP and first-positive rank: what the
paired comparisons of :mod:`detret.evaluate.reading` resample).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from omegaconf import DictConfig

from ..config.choices import Protocol, check_choice
from ..data.synth.generate import is_synthetic
from ..embed.artifact import read_descriptors, read_skipped
from ..errors import InputError
from ..runs.atomic import atomic_write_json, atomic_write_text
from ..runs.layout import METRICS_FILE, PER_QUERY_FILE, RunLayout
from ..runs.stage import SUMMARY_NAME, Stage, require_fresh
from ..search.rerank import Rerank, reranked_runs, scorer, split_reranked
from .acc_curve import plot_acc_curve
from .bootstrap import DEFAULT_RESAMPLES
from .protocol import DEFAULT_KS, category_ranks, metrics_from_ranks, per_query_values
from .published import comparison_tables
from .tables import write_tables

logger = logging.getLogger(__name__)

TABLE2_FILE = "table2.md"  # the paper's Tables 2 and 3: ours beside the published numbers


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


def _run_inputs(layout: RunLayout, names: Sequence[str], protocol: str) -> Dict[str, Path]:
    """Each run's descriptors (a re-ranked run's: its descriptor run's, and its search's summary, which holds
    the re-ranking's settings)."""
    inputs = {}
    for name in names:
        base, method = split_reranked(name)
        folder = layout.embed(base)
        require_fresh(folder, f"the descriptors '{base}' (detret embed)")
        for side in ("gallery", "queries"):
            inputs[f"{base}:{side}"] = folder / f"{side}.npy"
            inputs[f"{base}:{side}_rows"] = folder / f"{side}_rows.jsonl"
        if method:
            searched = layout.search(name, protocol)
            require_fresh(searched, f"the re-ranked run '{name}' (detret search {base} --rerank {method}"
                                    f"{'' if protocol == 'category' else ' --protocol ' + protocol})")
            inputs[f"{name}:search"] = searched / SUMMARY_NAME
    return inputs


def rerank_settings(layout: RunLayout, name: str, protocol: str) -> Rerank:
    """The re-ranking a re-ranked run was searched with (its search summary's ``rerank``)."""
    summary = json.loads((layout.search(name, protocol) / SUMMARY_NAME).read_text())
    return Rerank(**summary["rerank"])


def evaluate_run(layout: RunLayout, name: str, ks: Sequence[int], bootstrap: int = 0, seed: int = 0,
                 protocol: str = "category") -> Tuple[Dict, Dict]:
    """(Table 1's metrics, per-query values) of one run: a descriptor run (``embed-<name>``), or a re-ranked
    one (``<name>+<method>``, ranked by the re-ranker over the exact scores), unreadable photos counted; with
    ``bootstrap`` resamples, their 95% intervals (the same resampled queries for every run of a seed)."""
    base, method = split_reranked(name)
    folder = layout.embed(base)
    gallery, grows = read_descriptors(folder, "gallery")
    queries, qrows = read_descriptors(folder, "queries")
    ranker = scorer(rerank_settings(layout, name, protocol)) if method else None
    ranks = category_ranks(gallery, grows, queries, qrows, protocol, ranker)
    result = metrics_from_ranks(ranks, ks, bootstrap, seed)
    result["protocol"] = protocol
    add_unreadable_counts(result, read_skipped(folder))
    return result, per_query_values(ranks)


def default_runs(layout: RunLayout, protocol: str) -> List[str]:
    """Every descriptor run, then every re-ranked run searched under ``protocol``."""
    return layout.descriptor_runs() + reranked_runs(layout, protocol)


def run_eval(pcfg: DictConfig, names: Sequence[str], *, ks: Sequence[int] = DEFAULT_KS, out_name: str = "",
             bootstrap: int = DEFAULT_RESAMPLES, protocol: str = "category", force: bool = False,
             command: Optional[str] = None) -> Dict[str, Dict]:
    """The stage; returns the metrics per run (as ``metrics.json``). ``out_name``: another folder than ``eval``
    (``eval-all`` for the protocol all); ``bootstrap``: resamples of the 95% intervals (0: none), seeded by the
    pipeline's seed."""
    layout = RunLayout(pcfg.run_dir)
    check_choice(protocol, Protocol, "--protocol")
    names = list(names) or default_runs(layout, protocol)
    if not names:
        raise InputError(f"{layout.run_dir}: no descriptors to evaluate; run detret embed first")
    ks = sorted(set(int(k) for k in ks))
    if not ks or ks[0] < 1:
        raise InputError(f"K values must be positive integers, got {list(ks)}")
    if bootstrap < 0:
        raise InputError(f"--bootstrap must be 0 (no intervals) or a number of resamples, got {bootstrap}")
    config = {"runs": list(names), "ks": ks, "bootstrap": int(bootstrap), "seed": int(pcfg.seed)}
    if protocol != "category":
        config["protocol"] = protocol  # the key only where it is not the default: older evaluations stay valid
    out_name = out_name or ("eval" if protocol == "category" else f"eval-{protocol}")
    stage = Stage(layout.run_dir / out_name, "eval", config=config, inputs=_run_inputs(layout, names, protocol),
                  command=command, pipeline_config=pcfg)
    reused = stage.reuse_or_begin(force=force, summary_name=METRICS_FILE)
    if reused is not None:
        return reused
    evaluated = {name: evaluate_run(layout, name, ks, bootstrap, int(pcfg.seed), protocol) for name in names}
    results = {name: result for name, (result, _) in evaluated.items()}
    atomic_write_json(stage.stage_dir / PER_QUERY_FILE, {name: values for name, (_, values) in evaluated.items()})
    write_tables(stage.stage_dir, results, ks)
    plot_acc_curve(stage.stage_dir / "acc_at_k.png", results)
    outputs = {"table_md": "table.md", "table_csv": "table.csv", "acc_curve": "acc_at_k.png",
               "per_query": PER_QUERY_FILE}
    comparison = comparison_tables(results, ensemble_runs(layout, names), is_synthetic(pcfg.data.street2shop.root)) \
        if protocol == "category" else []
    if comparison:
        atomic_write_text(stage.stage_dir / TABLE2_FILE, "\n".join(t.markdown() for t in comparison))
        outputs["table2"] = TABLE2_FILE
    return stage.finish(results, outputs, summary_name=METRICS_FILE)


def read_per_query(eval_dir: Path) -> Optional[Dict]:
    """An evaluation's ``per_query.json`` (for the reading's paired intervals), or None for an evaluation
    written before it was kept."""
    path = Path(eval_dir) / PER_QUERY_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def ensemble_runs(layout: RunLayout, names: Sequence[str]) -> List[str]:
    """The runs built by ``combine`` (their summary names the members)."""
    out = []
    for name in names:
        summary = layout.embed(name) / SUMMARY_NAME
        if not split_reranked(name)[1] and summary.is_file() and "combine" in json.loads(summary.read_text()):
            out.append(name)
    return out

