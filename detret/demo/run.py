"""`detret demo`: the paper's Table 1 in miniature, every stage in order, reusing finished ones.

Steps (each is one CLI command; the demo calls the same functions in one
process, so torch and Detectron2 are imported once):

1. ``data synth``: the embedded dataset (ModaNet + Exact Street2Shop formats);
2. ``train-detector``: the small half-width R18-FPN detector, evaluated on the held-out split;
3. ``detect --split shop`` / ``--split street``: one crop per photo;
4. ``train-retrieval`` x 4: triplet / AP loss x whole shop photos / detected crops;
5. ``embed`` x 4, then ``embed --combine`` x 4: the paper's ensembles;
6. ``search`` x 8, and the best of them (Crops) re-ranked three ways (``search --rerank aqe | dba |
   diffusion``), ``eval`` (11 columns, each value with its 95% interval);
7. ``embed --dataset deepfashion2`` x 3 and ``eval --dataset deepfashion2``: the synthetic test
   products in DeepFashion2's format, Recall@K both ways and by annotation level;
8. ``report``.

``<out>/demo/timings.json`` records, per step, the command, whether it ran or
was reused, and its wall time in seconds (the "end to end" benchmark of the
pipeline); a rerun keeps the seconds measured when a reused step last ran.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from omegaconf import OmegaConf
from rich.console import Console

from ..config.choices import DemoSystems, check_choice
from ..config.pipeline import load_pipeline_config
from ..runs.atomic import atomic_write_json, atomic_write_text
from ..runs.layout import (
    METRICS_FILE,
    PAPER_ENSEMBLES,
    PAPER_MODELS,
    RERANKED,
    TABLE_ORDER,
    RunLayout,
)
from ..runs.stage import StaleArtifactError, stage_status
from ..search.rerank import PLAIN, RERANKERS, split_reranked
from .profiles import PROFILES, DemoProfile
from .steps import Step

TABLE_RUNS = TABLE_ORDER  # the runs of Table 1, in its column order
RERANK_BASE = "Crops"    # the paper's best run, re-ranked three ways: three more columns of the demo's Table 1
RERANKED_RUNS = tuple(f"{RERANK_BASE}{RERANKED}{m}" for m in RERANKERS.names() if m != PLAIN)
EVALUATED_RUNS = TABLE_RUNS + RERANKED_RUNS
# DeepFashion2-format view of the synthetic test products: run name -> the models it concatenates
DF2_RUNS = {"tri-crops": ("tri-crops",), "ap-crops": ("ap-crops",), "Crops": PAPER_ENSEMBLES["Crops"]}
DEMO_CONFIG_NAME = "demo.yaml"
TIMINGS_FILE = Path("demo") / "timings.json"  # under the demo's folder: wall time of every step
SEEDS_TIMINGS_FILE = Path("demo") / "timings-seeds.json"  # the same for --profile seeds


def write_demo_config(out: Path, profile: DemoProfile) -> Path:
    """``<out>/demo.yaml``: the synthetic dataset's detret.yaml with the profile's overrides."""
    base = OmegaConf.load(out / "detret.yaml")
    merged = OmegaConf.merge(base, OmegaConf.create(profile.overrides))
    path = out / DEMO_CONFIG_NAME
    atomic_write_text(path, f"# Pipeline config of `detret demo` ({profile.name} profile): the dataset's detret.yaml\n"
                            "# plus the demo's settings. Rerun any stage with `detret --config <this file> ...`.\n"
                            + OmegaConf.to_yaml(merged))
    return path


def _model_steps(prefix: str, layout: RunLayout, search_k: int) -> List[Step]:
    """Train and embed Table 1's four models, build its four ensembles, search all eight."""
    from ..embed.combine import run_combine
    from ..embed.stage import run_embed
    from ..retrieval.train import run_train_retrieval
    from ..search.rerank import Rerank
    from ..search.stage import run_search

    steps = [Step(f"train {m.name}", f"{prefix} train-retrieval --loss {m.loss} --shop-crops {m.shop_crops}",
                  layout.retrieval(m.name),
                  lambda c, cmd, f, m=m: run_train_retrieval(c, m.loss, m.shop_crops, command=cmd, force=f))
             for m in PAPER_MODELS]
    steps += [Step(f"embed {m.name}", f"{prefix} embed -m {m.name} --gallery-crops {m.shop_crops}",
                   layout.embed(m.name),
                   lambda c, cmd, f, m=m: run_embed(c, models=[m.name], gallery_crops=m.shop_crops, command=cmd,
                                                    force=f))
              for m in PAPER_MODELS]
    steps += [Step(f"ensemble {name}", f"{prefix} embed --combine {a} --combine {b} --name {name}",
                   layout.embed(name), lambda c, cmd, f, n=name, a=a, b=b: run_combine(c, [a, b], n, command=cmd,
                                                                                     force=f))
              for name, (a, b) in PAPER_ENSEMBLES.items()]
    steps += [Step(f"search {name}", f"{prefix} search {name} --k {search_k}", layout.search(name),
                   lambda c, cmd, f, n=name: run_search(c, n, k=search_k, command=cmd, force=f))
              for name in TABLE_RUNS]
    steps += [Step(f"re-rank {name}", f"{prefix} search {RERANK_BASE} --k {search_k} --rerank {method}",
                   layout.search(name), lambda c, cmd, f, m=method: run_search(
                       c, RERANK_BASE, k=search_k, rerank=Rerank(method=m), command=cmd, force=f))
              for name, method in ((n, split_reranked(n)[1]) for n in RERANKED_RUNS)]
    return steps


def _deepfashion2_steps(prefix: str, layout: RunLayout) -> List[Step]:
    """The synthetic test products in DeepFashion2's format, both directions, by annotation level (Ibrahim
    et al.'s Tables 2 and 3): the two cropped models and their ensemble."""
    from ..embed.deepfashion2 import run_embed_df2
    from ..evaluate.deepfashion2_stage import run_eval_df2

    steps = [Step(f"DeepFashion2 embed {name}", f"{prefix} embed --dataset deepfashion2 "
                  + " ".join(f"-m {m}" for m in models) + f" --name {name}", layout.embed_df2(name),
                  lambda c, cmd, f, n=name, ms=models: run_embed_df2(c, models=list(ms), name=n, command=cmd,
                                                                     force=f))
             for name, models in DF2_RUNS.items()]
    steps.append(Step("DeepFashion2 evaluate", f"{prefix} eval --dataset deepfashion2 {' '.join(DF2_RUNS)}",
                      layout.eval_df2, lambda c, cmd, f: run_eval_df2(c, list(DF2_RUNS), command=cmd, force=f)))
    return steps


def demo_steps(config_path: Path, profile: DemoProfile, run_dir: Path, systems: str = "paper") -> List[Step]:
    """The pipeline's steps, in order, with the CLI command each one stands for; `systems`: Table 1's
    models ("paper") or the seed systems ("seeds", after the same detection steps)."""
    from ..detect.stage import run_detect
    from ..detect.train import run_train_detector
    from ..evaluate.stage import run_eval
    from ..report.stage import run_report
    from .seeds import seed_steps

    prefix = f"detret --config {config_path}"
    layout = RunLayout(run_dir)
    detection = [
        Step("train the detector", f"{prefix} train-detector", layout.detector,
             lambda c, cmd, f: run_train_detector(c, command=cmd, force=f)),
        Step("detect shop photos", f"{prefix} detect --split shop", layout.detect_shop,
             lambda c, cmd, f: run_detect(c, "shop", command=cmd, force=f)),
        Step("crop street photos", f"{prefix} detect --split street", layout.detect("street", "test"),
             lambda c, cmd, f: run_detect(c, "street", command=cmd, force=f)),
    ]
    if systems == "seeds":
        return detection + seed_steps(prefix, layout, profile.search_k)
    return [
        *detection,
        *_model_steps(prefix, layout, profile.search_k),
        Step("evaluate (Table 1)", f"{prefix} eval {' '.join(EVALUATED_RUNS)} --per-category", layout.eval,
             lambda c, cmd, f: run_eval(c, list(EVALUATED_RUNS), command=cmd, force=f)),
        *_deepfashion2_steps(prefix, layout),
        Step("write the report", f"{prefix} report", layout.report,
             lambda c, cmd, f: run_report(c, list(EVALUATED_RUNS), timings=layout.demo_timings, command=cmd,
                                          force=f)),
    ]


def _load_timings(path: Path) -> Dict[str, Dict]:
    if not path.is_file():
        return {}
    try:
        return {r["command"]: r for r in json.loads(path.read_text())["steps"]}
    except (ValueError, KeyError, TypeError):
        return {}  # an unreadable timing file only loses old timings, never results


def run_demo(out: Path, *, quick: bool = False, seed: int = 0, overrides: Sequence[str] = (),
             console: Optional[Console] = None, systems: str = "paper") -> Dict:
    """Run (or finish) the demo in ``out``; returns {"config", "run_dir", "steps", "results", "findings"}."""
    from ..data.synth.generate import generate

    check_choice(systems, DemoSystems, "demo profile")
    console = console or Console()
    profile = PROFILES["quick" if quick else "full"]
    synth_cfg = dataclasses.replace(profile.synth, seed=seed)
    out = Path(out)
    timings_path = out / (TIMINGS_FILE if systems == "paper" else SEEDS_TIMINGS_FILE)
    old = _load_timings(timings_path)
    records: List[Dict] = []

    def record(title: str, command: str, status: str, seconds: float) -> None:
        entry = {"step": title, "command": command, "status": status, "seconds": round(seconds, 2)}
        if status == "reused" and command in old:
            entry["seconds_when_run"] = old[command].get("seconds_when_run", old[command]["seconds"])
        records.append(entry)
        total_run = sum(r.get("seconds_when_run", r["seconds"]) for r in records)
        atomic_write_json(timings_path, {"profile": profile.name, "steps": records,
                                         "total_seconds_when_run": round(total_run, 2)})

    started = time.perf_counter()
    data_cmd = (f"detret data synth --out {out} --seed {seed} --products {synth_cfg.n_products} "
                f"--distractors {synth_cfg.n_distractors} --modanet-images {synth_cfg.n_modanet_train}")
    n = 1 + len(demo_steps(out / DEMO_CONFIG_NAME, profile, out, systems))
    console.rule(f"[bold]detret demo ({profile.name})[/bold]: [1/{n}] generate the dataset")
    reused = stage_status(out).state == "done"
    t0 = time.perf_counter()
    try:
        generate(synth_cfg, out, command=data_cmd)
    except StaleArtifactError as exc:
        console.print(f"[yellow]regenerating[/yellow]: {exc}")
        reused = False
        generate(synth_cfg, out, command=data_cmd, force=True)
    record("generate the dataset", data_cmd, "reused" if reused else "ran", time.perf_counter() - t0)

    config_path = write_demo_config(out, profile)
    pcfg = load_pipeline_config(config_path, list(overrides))
    run_dir = Path(pcfg.run_dir)
    steps = demo_steps(config_path, profile, run_dir, systems)
    for i, step in enumerate(steps, start=2):
        reused = step.stage_dir is not None and stage_status(step.stage_dir).state == "done"
        console.rule(f"[{i}/{n}] {step.title}" + (" (finished earlier: reused)" if reused else ""))
        console.print(f"[dim]$ {step.command}[/dim]")
        t0 = time.perf_counter()
        try:
            step.run(pcfg, step.command, False)
        except StaleArtifactError as exc:
            # The demo owns its run directory: a stage built from other settings (an older
            # profile, other --set overrides) or from changed inputs is rebuilt, and said so.
            console.print(f"[yellow]rebuilding[/yellow]: {exc}")
            reused = False
            step.run(pcfg, step.command, True)
        seconds = time.perf_counter() - t0
        record(step.title, step.command, "reused" if reused else "ran", seconds)
        if not reused:
            console.print(f"[green]done[/green] in {seconds:.0f} s")

    results, findings, reading = _read_results(out, run_dir, systems)
    return {"config": config_path, "run_dir": run_dir, "steps": records, "results": results, "findings": findings,
            "reading": reading, "seconds": time.perf_counter() - started, "profile": profile.name,
            "systems": systems, "serve_commands": serve_commands(config_path, out / "catalogue", best_run(results))}


def _read_results(out: Path, run_dir: Path, systems: str):
    """(the evaluated runs' metrics, the reading's findings, its markdown), the markdown also in
    ``<out>/demo/reading.md`` (``reading-seeds.md``)."""
    from ..evaluate.reading import read_table, reading_markdown
    from ..evaluate.stage import read_per_query
    from .seeds import SEED_RUNS, SEEDS_EVAL, read_seeds, seeds_markdown

    if systems == "seeds":
        results = json.loads((run_dir / SEEDS_EVAL / METRICS_FILE).read_text())
        results = {r: results[r] for r in SEED_RUNS}
        findings = read_seeds(results, read_per_query(run_dir / SEEDS_EVAL))
        reading = seeds_markdown(findings)
        atomic_write_text(out / "demo" / "reading-seeds.md", "# What the seed systems' table says\n\n" + reading)
        return results, findings, reading
    results = json.loads((RunLayout(run_dir).eval / METRICS_FILE).read_text())
    results = {r: results[r] for r in EVALUATED_RUNS}
    findings = read_table(results, read_per_query(RunLayout(run_dir).eval))
    reading = reading_markdown(findings)
    atomic_write_text(out / "demo" / "reading.md", "# What the demo's Table 1 says\n\n" + reading)
    return results, findings, reading


def best_run(results: Dict) -> str:
    """The run of Table 1 with the best mean mAP over categories (the one worth serving; a re-ranked run is not
    one: a catalogue serves descriptors, and re-ranking is a search-time choice over them)."""
    servable = [r for r in results if not split_reranked(r)[1]]
    return max(servable, key=lambda r: results[r]["mean_over_categories"]["mAP"])


def serve_commands(config_path: Path, catalogue: Path, run: str) -> List[str]:
    """The two commands that turn a run into a served catalogue (printed at the end of the demo)."""
    return [f"detret --config {config_path} catalogue create {catalogue} --run {run} --import-gallery",
            f"detret serve {catalogue}"]
