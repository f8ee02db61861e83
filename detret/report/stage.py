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
from ..data.synth.generate import is_synthetic
from ..detect.artifact import ARTIFACT_NAME, read_artifact
from ..errors import InputError
from ..evaluate.acc_curve import plot_acc_curve
from ..evaluate.published import comparison_tables
from ..evaluate.reading import PAPER_MEANS, read_table, table_order
from ..evaluate.stage import ensemble_runs, read_per_query
from ..evaluate.tables import counts_rows, table_rows
from ..runs.atomic import atomic_write_text
from ..runs.layout import METRICS_FILE, PER_QUERY_FILE, RunLayout
from ..search.rerank import split_reranked
from ..runs.manifest import package_versions, read_manifest
from ..runs.stage import SUMMARY_NAME, Stage, require_fresh, stage_status
from ..search.stage import RANKINGS_FILE
from .figures import (
    DetectionPanel,
    RetrievalExample,
    plot_category_bars,
    plot_detections,
    plot_fallback_rates,
    plot_retrieval_examples,
)
from .html import build_page

logger = logging.getLogger(__name__)

EXAMPLES_FILE = "examples.json"  # which queries and photos the figures show
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


def _detection_panels(records: List, root: Path, domain: str, count: int, rng: random.Random
                      ) -> Tuple[List[DetectionPanel], List[Dict]]:
    """``count`` photos drawn at random (seeded) whatever their crop rule, from distinct categories where
    possible: the figure shows the detector as it is, not its best photos."""
    candidates = [r for r in records if r.status == "ok" and r.crop is not None]
    rng.shuffle(candidates)
    seen_cats: set = set()
    picked = [r for r in candidates if not (r.category in seen_cats or seen_cats.add(r.category))][:count]
    picked += [r for r in candidates if r not in picked][:count - len(picked)]
    panels, chosen = [], []
    for rec in picked:
        rgb = _photo(root, rec.photo_id)
        if rgb is None:
            continue
        top = sorted(rec.detections, key=lambda d: -d.score)[:MAX_BOXES_DRAWN]
        panels.append(DetectionPanel(rgb, f"{domain} {rec.photo_id} · {rec.category}",
                                     [(d.box_xyxy, d.label, d.score) for d in top], rec.crop.box_xyxy, rec.crop.rule))
        chosen.append({"domain": domain, "photo_id": rec.photo_id, "category": rec.category, "rule": rec.crop.rule})
    return panels, chosen


def _retrieval_rows(layout: RunLayout, root: Path, example_run: str, picked: List[Dict], k_show: int
                    ) -> List[RetrievalExample]:
    """Figure 5's rows: each picked query's photo and box, then its top shop photos (match or not)."""
    descriptors = layout.embed(split_reranked(example_run)[0])  # a re-ranked run's rows are its descriptors'
    gallery_by_key = {(g["category"], g["photo_id"]): g for g in _read_jsonl(descriptors / "gallery_rows.jsonl")}
    query_rows = _read_jsonl(descriptors / "queries_rows.jsonl")
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
    return rows


class _Figures:
    """The report's figures as they are drawn: (png path, caption, html id), and the examples chosen."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.items: List[tuple] = []
        self.chosen: Dict[str, List] = {}

    def add(self, name: str, caption: str, html_id: str) -> Path:
        path = self.folder / name
        self.items.append((path, caption, html_id))
        return path


def _metric_figures(figs: _Figures, results: Dict[str, Dict]) -> None:
    plot_category_bars(figs.add("category_bars.png", "mAP, Acc@1 and Acc@20 per category, one bar per model",
                                "fig-bars"), results)
    plot_acc_curve(figs.add("acc_at_k.png", "Acc@K for K = 1..50, mean over categories", "fig-acc"), results)


def _detection_figure(figs: _Figures, inputs: Dict[str, Path], root: Path, rng: random.Random) -> None:
    """Figure 4: six shop photos and two street photos drawn at random (seeded), with their boxes and crops."""
    panels: List[DetectionPanel] = []
    for key, domain, count in (("detect_shop", "shop", 6), ("detect_street", "street", 2)):
        if key in inputs:
            p, c = _detection_panels(list(read_artifact(inputs[key])), root, domain, count, rng)
            panels += p
            figs.chosen.setdefault("detections", []).extend(c)
    if panels:
        plot_detections(figs.add("detections.png", "Detections (dashed, top scores) and the chosen crop (cyan) "
                                 "with the rule that chose it, on photos drawn at random (Figure 4)",
                                 "fig-detections"), panels)


def _retrieval_figure(figs: _Figures, layout: RunLayout, root: Path, example_run: str, examples: int, seed: int,
                      k_show: int) -> None:
    """Figure 5: queries of the best run with their top shop photos, failures included."""
    picked = select_examples(_read_jsonl(layout.search(example_run) / RANKINGS_FILE), examples, seed=seed,
                             k_show=k_show)
    rows = _retrieval_rows(layout, root, example_run, picked, k_show)
    figs.chosen["retrieval"] = [{"run": example_run, "query_row": q["query_row"], "photo_id": q["photo_id"],
                                 "category": q["category"]} for q in picked]
    if rows:
        plot_retrieval_examples(figs.add(
            "retrieval_examples.png", f"Retrieval with {example_run} (the best mean mAP): each street query with "
            f"its box (yellow), then its top {k_show} shop photos, green for the same product, red for another; "
            "failures included (Figure 5)", "fig-retrieval"), rows)


def _fallback_section(figs: _Figures, layout: RunLayout) -> List[List]:
    """The crop policy's fallback rates: a figure and the table's rows."""
    summary = json.loads((layout.detect_shop / SUMMARY_NAME).read_text())
    plot_fallback_rates(figs.add("fallback_rates.png", "Shop photos whose crop fell back to the whole photo "
                                 "(no detection of the category above the objectness threshold)", "fig-fallback"),
                        summary)
    rows = []
    for cat, row in sorted(summary.items()):
        rate, covers = row.get("fallback_rate"), row.get("covers_product")
        rows.append([cat, row["photos"], row["skipped"], row["rules"].get("detection", 0),
                     row["rules"].get("fallback", 0), "" if rate is None else f"{100 * rate:.1f}%",
                     "" if covers is None else f"{100 * covers:.1f}%"])
    return rows


def _manifest_rows(layout: RunLayout) -> List[List[str]]:
    rows = []
    for folder in layout.stage_folders():
        if folder == layout.report or folder.parent != layout.run_dir:
            continue
        st = stage_status(folder)
        m = read_manifest(folder)
        rev = (m.git or {}).get("revision", "")[:10] if m and m.git else ""
        rows.append([st.stage, st.state, rev, st.command or ""])
    return rows


def _report_inputs(layout: RunLayout, example_run: Optional[str]) -> Dict[str, Path]:
    inputs = {"metrics": layout.eval / METRICS_FILE}
    if (layout.eval / PER_QUERY_FILE).is_file():  # evaluations before per-query values were kept have none
        inputs["per_query"] = layout.eval / PER_QUERY_FILE
    for key, folder in (("detect_shop", layout.detect_shop), ("detect_street", layout.detect("street", "test"))):
        if stage_status(folder).state == "done":
            inputs[key] = folder / ARTIFACT_NAME
    if example_run:
        inputs["rankings"] = layout.search(example_run) / RANKINGS_FILE
        inputs["gallery_rows"] = layout.embed(split_reranked(example_run)[0]) / "gallery_rows.jsonl"
    return inputs


def _evaluated(layout: RunLayout, names: Optional[Sequence[str]]) -> Dict[str, Dict]:
    """The evaluation's results of the runs to show (default: every evaluated run, in Table 1's order)."""
    require_fresh(layout.eval, "the evaluation (detret eval)")
    metrics = json.loads((layout.eval / METRICS_FILE).read_text())
    names = list(names) if names else table_order(metrics)
    unknown = [n for n in names if n not in metrics]
    if unknown:
        raise InputError(f"{layout.eval / METRICS_FILE}: no results for {unknown}; evaluated runs: {sorted(metrics)}")
    return {n: metrics[n] for n in names}


def _page(layout: RunLayout, results: Dict[str, Dict], figs: _Figures, fallback_rows: List[List],
          timings: Optional[Path], street2shop_root: Path) -> str:
    names = list(results)
    ks = results[names[0]].get("ks", [1, 20])
    # Timings are informational (not an input: a rerun of the demo rewrites them).
    timing_rows = json.loads(Path(timings).read_text())["steps"] if timings and Path(timings).is_file() else None
    paper_rows = [[m] + [f"{PAPER_MEANS[n][m]:.1f}" if n in PAPER_MEANS else "" for n in names]
                  for m in ("mAP", "Acc@1", "Acc@20")] if any(n in PAPER_MEANS for n in names) else None
    return build_page(
        title=f"detret report: {layout.run_dir}", run_dir=layout.run_dir,
        table_header=["category", "metric"] + names, table_rows=table_rows(results, ks),
        counts_rows=counts_rows(results), findings=read_table(results, read_per_query(layout.eval)), figures=figs.items,
        fallback_rows=fallback_rows, manifest_rows=_manifest_rows(layout), versions=package_versions(),
        timings=timing_rows, paper_rows=paper_rows,
        comparisons=comparison_tables(results, ensemble_runs(layout, names), is_synthetic(street2shop_root)))


def run_report(pcfg: DictConfig, names: Optional[Sequence[str]] = None, *, examples: int = 8, k_show: int = 7,
               seed: int = 0, timings: Optional[Path] = None, force: bool = False,
               command: Optional[str] = None) -> Dict:
    """The stage; returns {"html": the page's path, "example_run": the run of Figure 5 or None}."""
    layout = RunLayout(pcfg.run_dir)
    results = _evaluated(layout, names)
    searched = [n for n in results if stage_status(layout.search(n)).state == "done"]
    example_run = max(searched, key=lambda n: results[n]["mean_over_categories"]["mAP"]) if searched else None
    inputs = _report_inputs(layout, example_run)
    stage = Stage(layout.report, "report", config={"names": list(results), "examples": examples, "k_show": k_show,
                                                   "seed": seed}, inputs=inputs, command=command, pipeline_config=pcfg)
    html = layout.report / "index.html"
    if stage.reuse_or_begin(force=force, summary_name=EXAMPLES_FILE) is not None:
        return {"html": html, "example_run": example_run}
    root = Path(pcfg.data.street2shop.root)
    figs = _Figures(layout.report / "figures")
    _metric_figures(figs, results)
    _detection_figure(figs, inputs, root, random.Random(seed))
    if example_run:
        _retrieval_figure(figs, layout, root, example_run, examples, seed, k_show)
    fallback_rows = _fallback_section(figs, layout) if "detect_shop" in inputs and \
        (layout.detect_shop / SUMMARY_NAME).is_file() else []
    atomic_write_text(html, _page(layout, results, figs, fallback_rows, timings, root))
    stage.finish(figs.chosen, {"html": "index.html", "figures": "figures"}, summary_name=EXAMPLES_FILE)
    logger.info("report: %s", html)
    return {"html": html, "example_run": example_run}
