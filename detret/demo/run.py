"""`detret demo`: the paper's Table 1 in miniature, every stage in order, reusing finished ones.

Steps (each is one CLI command; the demo calls the same functions in one
process, so torch and Detectron2 are imported once):

1. ``data synth``: the embedded dataset (ModaNet + Exact Street2Shop formats);
2. ``train-detector``: the small half-width R18-FPN detector, evaluated on the held-out split;
3. ``detect --split shop`` / ``--split street``: one crop per photo;
4. ``train-retrieval`` x 4: triplet / AP loss x whole shop photos / detected crops;
5. ``embed`` x 4, then ``combine`` x 4: the paper's ensembles (the models, ensembles and
   re-rankings are the recipe ``detret/resources/recipes/paper.yaml``; ``--recipe seeds`` or a file of
   yours trains other models on the same detector and crops);
6. ``search`` x 8, and the best of them (Crops) re-ranked three ways (``search --rerank aqe | dba |
   diffusion``), ``eval`` (11 columns, each value with its 95% interval);
7. ``embed-df2`` x 3 and ``eval-df2``: the synthetic test
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

from ..config.pipeline import load_pipeline_config
from ..config.recipes import Recipe, load_recipe
from ..runs.atomic import atomic_write_json, atomic_write_text
from ..runs.layout import METRICS_FILE, RunLayout
from ..runs.stage import StaleArtifactError, stage_status
from ..search.rerank import split_reranked
from .profiles import PROFILES, DemoProfile
from .recipe_steps import (check_recipe, eval_folder, eval_out_name, evaluated_runs, is_main, model_steps,
                           needs_training_masks)
from .steps import Step

DEMO_CONFIG_NAME = "demo.yaml"
TIMINGS_FILE = Path("demo") / "timings.json"  # under the demo's folder: wall time of every step (the paper)


def timings_file(recipe: Recipe) -> Path:
    """``demo/timings.json`` for the paper's recipe, ``demo/timings-<name>.json`` for another."""
    return TIMINGS_FILE if is_main(recipe) else Path("demo") / f"timings-{recipe.name}.json"


def write_demo_config(out: Path, profile: DemoProfile) -> Path:
    """``<out>/demo.yaml``: the synthetic dataset's detret.yaml with the profile's overrides."""
    base = OmegaConf.load(out / "detret.yaml")
    merged = OmegaConf.merge(base, OmegaConf.create(profile.overrides))
    path = out / DEMO_CONFIG_NAME
    atomic_write_text(path, f"# Pipeline config of `detret demo` ({profile.name} profile): the dataset's detret.yaml\n"
                            "# plus the demo's settings. Rerun any stage with `detret --config <this file> ...`.\n"
                            + OmegaConf.to_yaml(merged))
    return path


def _deepfashion2_steps(prefix: str, layout: RunLayout, recipe: Recipe) -> List[Step]:
    """The synthetic test products in DeepFashion2's format, both directions, by annotation level (Ibrahim
    et al.'s Tables 2 and 3): the recipe's ``deepfashion2`` runs (an ensemble: its members concatenated)."""
    from ..embed.deepfashion2 import run_embed_df2
    from ..evaluate.deepfashion2_stage import run_eval_df2

    members = {e.name: e.members for e in recipe.ensembles}
    runs = {name: tuple(members.get(name, (name,))) for name in recipe.deepfashion2}
    steps = [Step(f"DeepFashion2 embed {name}", f"{prefix} embed-df2 "
                  + " ".join(f"-m {m}" for m in models) + f" --name {name}", layout.embed_df2(name),
                  lambda c, cmd, f, n=name, ms=models: run_embed_df2(c, models=list(ms), name=n, command=cmd,
                                                                     force=f))
             for name, models in runs.items()]
    if runs:
        steps.append(Step("DeepFashion2 evaluate", f"{prefix} eval-df2 {' '.join(runs)}",
                          layout.eval_df2, lambda c, cmd, f: run_eval_df2(c, list(runs), command=cmd, force=f)))
    return steps


def demo_steps(config_path: Path, profile: DemoProfile, run_dir: Path, recipe: Recipe) -> List[Step]:
    """The pipeline's steps, in order, with the CLI command each one stands for: the detector, then the
    recipe's models (the paper's Table 1, the seed systems, or a recipe of yours: on the same crops)."""
    from ..detect.stage import run_detect
    from ..detect.train import run_train_detector
    from ..evaluate.stage import run_eval
    from ..report.stage import run_report

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
    if needs_training_masks(recipe):   # the masks of the training pairs' street photos (mask crops)
        detection.append(Step("detect the training street photos", f"{prefix} detect --split street --subset train",
                              layout.detect("street", "train"),
                              lambda c, cmd, f: run_detect(c, "street", subset="train", command=cmd, force=f)))
    runs = evaluated_runs(recipe)
    out_name = eval_out_name(recipe)
    name_option = "" if out_name is None else f" --out-name {out_name}"
    evaluate = Step(f"evaluate ({'Table 1' if is_main(recipe) else recipe.title or recipe.name})",
                    f"{prefix} eval {' '.join(runs)} --per-category{name_option}", eval_folder(layout, recipe),
                    lambda c, cmd, f: run_eval(c, list(runs), out_name=out_name, command=cmd, force=f))
    steps = [*detection, *model_steps(recipe, prefix, layout, profile.search_k), evaluate]
    if not is_main(recipe):
        return steps
    return [*steps, *_deepfashion2_steps(prefix, layout, recipe),
            Step("write the report", f"{prefix} report", layout.report,
                 lambda c, cmd, f: run_report(c, list(runs), timings=layout.demo_timings, command=cmd, force=f))]


def _load_timings(path: Path) -> Dict[str, Dict]:
    if not path.is_file():
        return {}
    try:
        return {r["command"]: r for r in json.loads(path.read_text())["steps"]}
    except (ValueError, KeyError, TypeError):
        return {}  # an unreadable timing file only loses old timings, never results


def run_demo(out: Path, *, quick: bool = False, seed: int = 0, overrides: Sequence[str] = (),
             console: Optional[Console] = None, recipe: str | Path = "paper") -> Dict:
    """Run (or finish) the demo of `recipe` (a shipped recipe's name or a recipe file) in ``out``; returns
    {"config", "run_dir", "steps", "results", "findings", ...}."""
    from ..data.synth.generate import generate

    recipe = load_recipe(recipe)
    console = console or Console()
    profile = PROFILES["quick" if quick else "full"]
    synth_cfg = dataclasses.replace(profile.synth, seed=seed)
    out = Path(out)
    timings_path = out / timings_file(recipe)
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
    n = 1 + len(demo_steps(out / DEMO_CONFIG_NAME, profile, out, recipe))
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
    check_recipe(recipe, pcfg)  # every model's loss, blocks and settings, before anything is trained
    run_dir = Path(pcfg.run_dir)
    steps = demo_steps(config_path, profile, run_dir, recipe)
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

    results, findings, reading = _read_results(out, run_dir, recipe)
    return {"config": config_path, "run_dir": run_dir, "steps": records, "results": results, "findings": findings,
            "reading": reading, "seconds": time.perf_counter() - started, "profile": profile.name,
            "recipe": recipe, "timings": out / timings_file(recipe),
            "serve_commands": serve_commands(config_path, out / "catalogue", best_run(results))}


def _read_results(out: Path, run_dir: Path, recipe: Recipe):
    """(the evaluated runs' metrics, the reading's findings, its markdown), the markdown also in
    ``<out>/demo/reading.md`` (``reading-<recipe>.md``)."""
    from ..evaluate.reading import read_table, reading_markdown
    from ..evaluate.stage import read_per_query
    from ..evaluate.zero_shot import read_zero_shot, zero_shot_markdown
    from .seeds import read_seeds, seeds_markdown

    eval_dir = eval_folder(RunLayout(run_dir), recipe)
    results = json.loads((eval_dir / METRICS_FILE).read_text())
    results = {r: results[r] for r in evaluated_runs(recipe)}
    readers = {"paper": (read_table, reading_markdown, "What the demo's Table 1 says"),
               "seeds": (read_seeds, seeds_markdown, "What the seed systems' table says")}
    if recipe.name in readers:
        read, markdown, title = readers[recipe.name]
        findings = read(results, read_per_query(eval_dir))
        reading = markdown(findings)
    elif recipe.descriptors and recipe.models:   # trained models beside foundation models: does training pay?
        findings, title = read_zero_shot(results, read_per_query(eval_dir), recipe), recipe.title or recipe.name
        reading = zero_shot_markdown(findings)
    else:  # a recipe of yours states no claims to read
        findings, title = [], f"{recipe.title or recipe.name}"
        reading = f"No claims to read: the table is {eval_dir / 'table.md'}.\n"
    name = "reading.md" if is_main(recipe) else f"reading-{recipe.name}.md"
    atomic_write_text(out / "demo" / name, f"# {title}\n\n" + reading)
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
