"""demo: the figures of a finished `detret demo` (and of `demo --recipe seeds`, when it ran) in one JSON
file, which the documentation renders: Table 1's means with their 95% intervals, the reading, the
seed systems' means, the detector's held-out AP and how often its crops cover the product, and the
time of every step. Nothing is rerun: the demo folder's own files are read."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Optional

METRICS = ("mAP", "Acc@1", "Acc@20")


def _means(metrics_path: Path, recipe: str) -> Dict[str, Dict]:
    """run -> {metric: [value, lo, hi]} (mean over categories, percent) of an eval folder's metrics.json, in
    the order of the recipe's table."""
    from detret.config.recipes import load_recipe
    from detret.demo.recipe_steps import evaluated_runs

    metrics = json.loads(metrics_path.read_text())
    order = [r for r in evaluated_runs(load_recipe(recipe)) if r in metrics]
    out: Dict[str, Dict] = {}
    for run, m in ((r, metrics[r]) for r in order + sorted(set(metrics) - set(order))):
        ci = m.get("ci95", {}).get("mean_over_categories", {})
        out[run] = {}
        for k in METRICS:
            lo, hi = ci.get(k, (None, None))
            out[run][k] = [100 * m["mean_over_categories"][k], None if lo is None else 100 * lo,
                           None if hi is None else 100 * hi]
    return out


def _read(path: Path) -> Optional[str]:
    return path.read_text() if path.is_file() else None


def _detector(runs: Path) -> Dict:
    evaluation = json.loads((runs / "detector" / "evaluation.json").read_text())
    bbox = evaluation.get("results", {}).get("bbox", {})
    summary = json.loads((runs / "detect-shop" / "summary.json").read_text())
    return {"AP": bbox.get("AP"), "AP50": bbox.get("AP50"),
            "per_category_AP": {k[3:]: v for k, v in bbox.items() if k.startswith("AP-")},
            "shop_photos": sum(s["photos"] for s in summary.values()),
            "covers_product": {c: s.get("covers_product") for c, s in summary.items()},
            "fallback_rate": {c: s.get("fallback_rate") for c, s in summary.items()}}


def bench_demo(args) -> Dict:
    config = Path(args.config)
    out = config.parent
    runs = out / "runs"
    timings = json.loads((out / "demo" / "timings.json").read_text())
    result = {"benchmark": "demo", "demo": str(out), "profile": timings.get("profile"),
              "table1": _means(runs / "eval" / "metrics.json", "paper"), "reading": _read(out / "demo" / "reading.md"),
              "detector": _detector(runs),
              "timings_s": {s["step"]: s.get("seconds_when_run", s["seconds"]) for s in timings["steps"]}}
    seeds = runs / "eval-seeds" / "metrics.json"
    if seeds.is_file():
        seed_timings = json.loads((out / "demo" / "timings-seeds.json").read_text())
        result.update(seeds=_means(seeds, "seeds"), reading_seeds=_read(out / "demo" / "reading-seeds.md"),
                      timings_seeds_s={s["step"]: s.get("seconds_when_run", s["seconds"])
                                       for s in seed_timings["steps"]})
    return result
