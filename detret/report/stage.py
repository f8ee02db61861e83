"""`detret report`: the visual report of a run, real or synthetic.

Reads the run's artifacts (eval/metrics.json, detect-*/detections.jsonl and
summary.json, search-<run>/rankings.jsonl, embed-<run>/*_rows.jsonl, every
manifest) and writes ``<run_dir>/report/``:

- ``index.html``: one self-contained page (figures inlined): Table 1, the
  reading of it, the figures, the crop policy's fallback rates, the manifest;
- ``figures/*.png``: the same figures as files (detections.png = Figure 4,
  retrieval_examples.png = Figure 5, category_bars.png, acc_at_k.png,
  fallback_rates.png);
- ``examples.json``: which queries and photos the figures show.

Example photos are chosen with a seeded RNG, so a rerun gives the same page.
Sections whose artifacts the run lacks (e.g. no detect-shop for a run embedded
from whole photos) are left out, and the page says which.
"""
from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from omegaconf import DictConfig

from ..data.images import PhotoError, read_rgb
from ..data.street2shop import PHOTO_NAME
from ..detect.artifact import read_artifact
from ..evaluate.reading import PAPER_MEANS, read_table, table_order
from ..evaluate.report import counts_rows, plot_acc_curve, table_rows
from ..runs.atomic import atomic_write_json, atomic_write_text
from ..runs.manifest import package_versions, read_manifest
from ..runs.stage import Stage, require_fresh, stage_status
from .figures import (DetectionPanel, RetrievalExample, plot_category_bars, plot_detections, plot_fallback_rates,
                      plot_retrieval_examples)
from .html import build_page

logger = logging.getLogger(__name__)

MAX_BOXES_DRAWN = 4  # detections per photo drawn in Figure 4 (highest scores), besides the crop


def select_examples(rankings: Sequence[Dict], n: int, seed: int = 0, k_show: int = 7) -> List[Dict]:
    """Queries for Figure 5: successes (top-1 matches) and failures (no match in the top k_show).

    Half of ``n`` of each kind where possible, spread over categories (one per
    category before a second), chosen with a seeded RNG; the rest filled with
    the other kind. A query's match is a result of its own product id (rankings
    are within category, so a product id names the product).
    """
    rng = random.Random(seed)
    hits = [r for r in rankings if r["results"] and r["results"][0][1] == r["product_id"]]
    misses = [r for r in rankings if r["results"] and all(res[1] != r["product_id"] for res in r["results"][:k_show])]

    def spread(items: List[Dict]) -> List[Dict]:
        by_cat: Dict[str, List[Dict]] = {}
        for r in items:
            by_cat.setdefault(r["category"], []).append(r)
        for rows in by_cat.values():
            rng.shuffle(rows)
        order: List[Dict] = []
        while any(by_cat.values()):
            for cat in sorted(by_cat):
                if by_cat[cat]:
                    order.append(by_cat[cat].pop())
        return order

    hits, misses = spread(hits), spread(misses)
    n_miss = min(len(misses), max(n // 2, n - len(hits)))
    n_hit = min(len(hits), n - n_miss)
    return hits[:n_hit] + misses[:n_miss]


def _read_jsonl(path: Path) -> List[Dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _photo(root: Path, photo_id: int):
    try:
        return read_rgb(root / "images" / PHOTO_NAME.format(photo_id=photo_id))
    except PhotoError as exc:
        logger.warning("report: %s", exc)
        return None


def _detection_panels(records: List, root: Path, domain: str, rules: Dict[str, int], rng: random.Random
                      ) -> Tuple[List[DetectionPanel], List[Dict]]:
    """Up to rules[rule] photos per crop rule, from distinct categories where possible."""
    panels, chosen = [], []
    for rule, count in rules.items():
        candidates = [r for r in records if r.status == "ok" and r.crop is not None and r.crop.rule == rule
                      and (r.detections or rule != "ground_truth")]
        rng.shuffle(candidates)
        seen_cats = set()
        picked = [r for r in candidates if not (r.category in seen_cats or seen_cats.add(r.category))][:count]
        for rec in picked:
            rgb = _photo(root, rec.photo_id)
            if rgb is None:
                continue
            top = sorted(rec.detections, key=lambda d: -d.score)[:MAX_BOXES_DRAWN]
            panels.append(DetectionPanel(rgb, f"{domain} {rec.photo_id} · {rec.category}",
                                         [(d.box_xyxy, d.label, d.score) for d in top], rec.crop.box_xyxy, rule))
            chosen.append({"domain": domain, "photo_id": rec.photo_id, "category": rec.category, "rule": rule})
    return panels, chosen


def run_report(pcfg: DictConfig, names: Optional[Sequence[str]] = None, *, examples: int = 8, k_show: int = 7,
               seed: int = 0, timings: Optional[Path] = None, force: bool = False,
               command: Optional[str] = None) -> Dict:
    run_dir = Path(pcfg.run_dir)
    eval_dir = run_dir / "eval"
    require_fresh(eval_dir, "the evaluation (detret eval)")
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    names = list(names) if names else table_order(metrics)
    unknown = [n for n in names if n not in metrics]
    if unknown:
        raise ValueError(f"{eval_dir / 'metrics.json'}: no results for {unknown}; evaluated runs: {sorted(metrics)}")
    results = {n: metrics[n] for n in names}
    searched = [n for n in names if stage_status(run_dir / f"search-{n}").state == "done"]
    example_run = max(searched, key=lambda n: results[n]["mean_over_categories"]["mAP"]) if searched else None

    inputs = {"metrics": eval_dir / "metrics.json"}
    optional = {"detect_shop": run_dir / "detect-shop" / "detections.jsonl",
                "detect_street": run_dir / "detect-street-test" / "detections.jsonl"}
    for key, path in optional.items():
        if stage_status(path.parent).state == "done":
            inputs[key] = path
    if example_run:
        inputs["rankings"] = run_dir / f"search-{example_run}" / "rankings.jsonl"
        inputs["gallery_rows"] = run_dir / f"embed-{example_run}" / "gallery_rows.jsonl"
    out = run_dir / "report"
    stage = Stage(out, "report", config={"names": names, "examples": examples, "k_show": k_show, "seed": seed},
                  inputs=inputs, command=command, pipeline_config=pcfg)
    if stage.begin(force=force) == "done":
        return {"html": out / "index.html", "example_run": example_run}

    figs = out / "figures"
    root = Path(pcfg.data.street2shop.root)
    rng = random.Random(seed)
    figures: List[tuple] = []
    chosen: Dict[str, List] = {}
    plot_category_bars(figs / "category_bars.png", results)
    figures.append((figs / "category_bars.png", "mAP, Acc@1 and Acc@20 per category, one bar per model", "fig-bars"))
    plot_acc_curve(figs / "acc_at_k.png", results)
    figures.append((figs / "acc_at_k.png", "Acc@K for K = 1..50, mean over categories", "fig-acc"))

    panels: List[DetectionPanel] = []
    if "detect_shop" in inputs:
        shop = list(read_artifact(inputs["detect_shop"]))
        p, c = _detection_panels(shop, root, "shop", {"detection": 4, "fallback": 2}, rng)
        panels += p
        chosen["detections"] = c
    if "detect_street" in inputs:
        street = list(read_artifact(inputs["detect_street"]))
        p, c = _detection_panels(street, root, "street", {"ground_truth": 2}, rng)
        panels += p
        chosen.setdefault("detections", []).extend(c)
    if panels:
        plot_detections(figs / "detections.png", panels)
        figures.append((figs / "detections.png", "Detections (dashed, top scores) and the chosen crop (cyan) with "
                        "the rule that chose it (Figure 4)", "fig-detections"))

    if example_run:
        rankings = _read_jsonl(inputs["rankings"])
        gallery_by_key = {(g["category"], g["photo_id"]): g for g in _read_jsonl(inputs["gallery_rows"])}
        query_rows = _read_jsonl(run_dir / f"embed-{example_run}" / "queries_rows.jsonl")
        picked = select_examples(rankings, examples, seed=seed, k_show=k_show)
        rows: List[RetrievalExample] = []
        for q in picked:
            qrgb = _photo(root, q["photo_id"])
            if qrgb is None:
                continue
            results_shown = []
            for photo_id, product_id, score in q["results"][:k_show]:  # rankings.jsonl: [photo, product, score]
                grow = gallery_by_key[(q["category"], photo_id)]
                grgb = _photo(root, photo_id)
                if grgb is not None:
                    box = tuple(grow["box_xyxy"]) if grow.get("box_xyxy") else None
                    results_shown.append((grgb, box, product_id == q["product_id"], float(score)))
            qbox = query_rows[q["query_row"]].get("box_xyxy")
            rows.append(RetrievalExample(qrgb, tuple(qbox) if qbox else None,
                                         f"{q['category']} · product {q['product_id']}", results_shown))
        chosen["retrieval"] = [{"run": example_run, "query_row": q["query_row"], "photo_id": q["photo_id"],
                                "category": q["category"]} for q in picked]
        if rows:
            plot_retrieval_examples(figs / "retrieval_examples.png", rows)
            figures.append((figs / "retrieval_examples.png",
                            f"Retrieval with {example_run} (the best mean mAP): each street query with its box "
                            f"(yellow), then its top {k_show} shop photos, green for the same product, red for "
                            "another; failures included (Figure 5)", "fig-retrieval"))

    fallback_rows: List[List[str]] = []
    summary_path = run_dir / "detect-shop" / "summary.json"
    if "detect_shop" in inputs and summary_path.is_file():
        summary = json.loads(summary_path.read_text())
        plot_fallback_rates(figs / "fallback_rates.png", summary)
        figures.append((figs / "fallback_rates.png", "Shop photos whose crop fell back to the whole photo "
                        "(no detection of the category above the objectness threshold)", "fig-fallback"))
        for cat, row in sorted(summary.items()):
            rate = row.get("fallback_rate")
            fallback_rows.append([cat, row["photos"], row["skipped"], row["rules"].get("detection", 0),
                                  row["rules"].get("fallback", 0), "" if rate is None else f"{100 * rate:.1f}%"])

    manifest_rows = []
    for path in sorted(run_dir.glob("*/manifest.json")):
        if path.parent == out:
            continue
        st = stage_status(path.parent)
        m = read_manifest(path.parent)
        rev = (m.git or {}).get("revision", "")[:10] if m and m.git else ""
        manifest_rows.append([st.stage, st.state, rev, st.command or ""])
    ks = results[names[0]].get("ks", [1, 20])
    # Timings are informational (not an input: a rerun of the demo rewrites them).
    timing_rows = json.loads(Path(timings).read_text())["steps"] if timings and Path(timings).is_file() else None
    page = build_page(
        title=f"detret report: {run_dir}", run_dir=run_dir,
        table_header=["category", "metric"] + names, table_rows=table_rows(results, ks),
        counts_rows=counts_rows(results), findings=read_table(results), figures=figures,
        fallback_rows=fallback_rows, manifest_rows=manifest_rows, versions=package_versions(), timings=timing_rows,
        paper_rows=[[m] + [f"{PAPER_MEANS[n][m]:.1f}" if n in PAPER_MEANS else "" for n in names]
                    for m in ("mAP", "Acc@1", "Acc@20")] if any(n in PAPER_MEANS for n in names) else None)
    atomic_write_text(out / "index.html", page)
    atomic_write_json(out / "examples.json", chosen)
    stage.complete({"html": "index.html", "figures": "figures", "examples": "examples.json"})
    logger.info("report: %s", out / "index.html")
    return {"html": out / "index.html", "example_run": example_run}
