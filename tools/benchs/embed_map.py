"""embed-map: a demo model's mean mAP with bf16 descriptors against its fp32 ones."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Dict


def bench_embed_map(args) -> Dict:
    """The demo's mAP with bf16 descriptors against fp32 ones: embeds one of a run's trained
    models again with ``precision="bf16"`` (the same crops), evaluates both, and removes
    the extra descriptors and evaluation afterwards (they would otherwise join the run's table)."""
    import shutil

    from detret.config.pipeline import load_pipeline_config
    from detret.embed.artifact import read_descriptors
    from detret.embed.stage import run_embed
    from detret.evaluate.stage import run_eval
    from detret.runs.layout import RunLayout

    if not args.config:
        raise SystemExit("embed-map: pass --config of a demo run, e.g. runs/demo/demo.yaml")
    pcfg = load_pipeline_config(args.config, ["device=cpu"])
    run_dir = Path(pcfg.run_dir)
    layout = RunLayout(run_dir)
    model = args.model
    if not (layout.embed(model)).is_dir():
        raise SystemExit(f"embed-map: {run_dir} has no descriptors 'embed-{model}' (run `detret demo` first)")
    gallery_crops = json.loads((layout.embed(model) / "summary.json").read_text()).get("gallery_crops",
                                                                                                "detected")
    name, eval_name = f"bench-bf16-{model}", "bench-eval-bf16"
    try:
        t0 = time.perf_counter()
        run_embed(pcfg, models=[model], gallery_crops=gallery_crops, name=name, precision="bf16", force=True)
        t_bf16 = time.perf_counter() - t0
        results = run_eval(pcfg, [model, name], out_name=eval_name, force=True)
        cosines = []
        for side in ("gallery", "queries"):
            a, _ = read_descriptors(layout.embed(model), side)
            b, _ = read_descriptors(layout.embed(name), side)
            cosines.append(float((a * b).sum(1).min()))
    finally:
        for folder in (layout.embed(name), run_dir / eval_name):
            shutil.rmtree(folder, ignore_errors=True)
    means = {k: results[k]["mean_over_categories"] for k in (model, name)}
    per_cat = results[model]["per_category"]
    scored = {c: v.get("queries_scored", v["queries"]) for c, v in per_cat.items()}
    return {"benchmark": "embed-map", "run": str(run_dir), "model": model, "gallery_crops": gallery_crops,
            "bf16_embed_s": t_bf16, "fp32": means[model], "bf16": means[name],
            "map_change_points": 100 * abs(means[name]["mAP"] - means[model]["mAP"]),
            "queries": sum(scored.values()),
            # the mean over categories moves by this many points when one query's AP moves by 1
            "one_query_weight_points": 100 * max(1 / (len(scored) * n) for n in scored.values() if n),
            "min_cosine_bf16_vs_fp32": min(cosines)}
