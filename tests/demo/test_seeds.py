"""`detret demo --recipe seeds`: each seed system's configuration, its reading, and the run on the quick demo."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from detret.config.pipeline import load_pipeline_config
from detret.config.recipes import load_recipe
from detret.demo.recipe_steps import check_recipe, model_config, model_steps
from detret.demo.seeds import read_seeds
from detret.errors import InputError
from detret.runs.layout import RunLayout

SEEDS = load_recipe("seeds")
SEED_SYSTEMS = SEEDS.models
SEED_RUNS = SEEDS.columns()


def _result(map_percent):
    return {"mean_over_categories": {"mAP": map_percent / 100.0}}


def _runs(means, spread=0.0, seed=0):
    """(metrics.json, per_query.json) of runs whose per-query AP is a shared difficulty plus the run's mean
    (plus noise of sd ``spread``): with no noise every paired difference is exact, beyond noise."""
    rng = np.random.default_rng(seed)
    difficulty = rng.uniform(-0.1, 0.1, size=200)
    difficulty -= difficulty.mean()
    per_query, results = {}, {}
    for run, m in means.items():
        noise = rng.normal(0, spread, size=200) if spread else np.zeros(200)
        ap = m / 100.0 + difficulty + noise - noise.mean()
        per_query[run] = {"tops": {"queries": [[i, 0] for i in range(200)], "ap": list(ap),
                                   "first_rank": [1] * 200}}
        results[run] = _result(m)
    return results, per_query


MEANS = {"tri-crops": 40, "ap-crops": 41, "gajic-shared": 30, "gajic-ss": 32, "darn": 38, "npair": 50,
         "lifted": 35, "angular": 45, "batch-hard": 44, "morelli": 42}


def test_the_reading_sets_each_system_beside_its_papers_claim():
    results, per_query = _runs(MEANS)
    findings = {f.question: f for f in read_seeds(results, per_query)}
    assert findings["streams"].agrees_with_paper is True and "+2.0 [+2.0, +2.0] points" in findings["streams"].text
    assert findings["attributes"].agrees_with_paper is False and "-2.0 [-2.0, -2.0]" in findings["attributes"].text
    assert findings["hardest"].agrees_with_paper is True
    assert findings["metric losses"].agrees_with_paper is True
    assert "npair 50.0, angular 45.0, batch-hard 44.0, lifted 35.0" in findings["metric losses"].text
    assert "Best system here: npair (mean mAP 50.0); against the runner-up angular: +5.0" in findings["best"].text
    assert "worst: gajic-shared (30.0)" in findings["best"].text
    results, per_query = _runs({**MEANS, "lifted": 60})
    assert {f.question: f for f in read_seeds(results, per_query)}["metric losses"].agrees_with_paper is False
    del results["gajic-ss"]
    assert "streams" not in {f.question for f in read_seeds(results, per_query)}


def test_differences_within_noise_agree_with_nothing():
    """Per-query noise of 0.3 on 200 queries: a 2-point difference is within noise, and so is no claim."""
    results, per_query = _runs(MEANS, spread=0.3)
    findings = {f.question: f for f in read_seeds(results, per_query)}
    assert "within noise" in findings["streams"].text and findings["streams"].agrees_with_paper is None
    assert findings["attributes"].agrees_with_paper is None
    untested = {f.question: f for f in read_seeds(results)}
    assert all(f.agrees_with_paper is None for f in untested.values()) and "untested" in untested["streams"].text


def test_each_printed_command_gives_the_systems_config(tmp_path):
    """The CLI command a seed step prints (--set ... train-retrieval ...) rebuilds the config the demo trains."""
    base = load_pipeline_config(None, [f"run_dir={tmp_path}"], cwd=tmp_path)
    steps = {s.title.split()[1]: s for s in model_steps(SEEDS, "detret", RunLayout(tmp_path), 20)
             if s.title.startswith("train")}
    assert list(steps) == list(SEED_RUNS)
    for system in SEED_SYSTEMS:
        words = steps[system.name].command.split()
        sets = [words[i + 1] for i, w in enumerate(words) if w == "--set"]
        from_command = load_pipeline_config(None, [f"run_dir={tmp_path}", *sets], cwd=tmp_path)
        assert from_command.retrieval.train == model_config(base, system).retrieval.train, system.name
        assert f"--loss {system.loss}" in steps[system.name].command
    ss = model_config(base, next(s for s in SEED_SYSTEMS if s.name == "gajic-ss")).retrieval.train
    assert (ss.pooling, ss.streams, ss.init_from) == ("mac", "domain", "gajic-shared")
    npair = model_config(base, next(s for s in SEED_SYSTEMS if s.name == "npair")).retrieval.train
    assert (npair.sampler, npair.pk_products, npair.pk_photos) == ("pk", 30, 2)


@pytest.mark.slow
def test_seeds_demo_trains_every_system_on_the_default_demos_crops(demo_quick, tmp_path):
    from detret.config.recipes import paper
    from detret.demo.recipe_steps import evaluated_runs
    from detret.demo.run import run_demo
    from detret.retrieval.model import load_checkpoint

    src, _ = demo_quick
    out = tmp_path / "demo"
    shutil.copytree(src, out)
    result = run_demo(out, quick=True, overrides=["device=cpu"], recipe="seeds")
    steps = {s["step"]: s["status"] for s in result["steps"]}
    for reused in ("train the detector", "detect shop photos",
                   "train tri-crops (Kucer & Murray 2019: GeM, triplet, mined negatives)",
                   "train ap-crops (Kucer & Murray 2019: GeM, AP loss (listwise))"):
        assert steps[reused] == "reused", reused  # the default demo's detector, crops and K&M runs
    assert list(result["results"]) == list(SEED_RUNS)
    run_dir = Path(result["run_dir"])
    meta = {name: load_checkpoint(run_dir / f"retrieval-{name}" / "model.pt")[0].meta for name in SEED_RUNS}
    assert meta["gajic-shared"]["pooling"] == "mac" and meta["gajic-ss"]["streams"] == "domain"
    assert meta["darn"]["streams"] == "domain" and set(meta["darn"]["attributes"]) == {"colour", "pattern", "trim",
                                                                                       "badge"}
    assert meta["morelli"]["pooling"] == "rmac" and meta["morelli"]["training"]["loss"] == "hardest"
    for loss in ("npair", "lifted", "angular", "batch-hard"):
        assert meta[loss]["training"]["loss"] == loss and meta[loss]["training"]["train"]["sampler"] == "pk"
    assert json.loads((out / "demo" / "timings-seeds.json").read_text())["steps"]
    reading = (out / "demo" / "reading-seeds.md").read_text()
    assert "Gajic & Baldrich" in reading and "Ibrahim et al.'s losses by mean mAP" in reading
    assert (run_dir / "eval-seeds" / "table.md").is_file()
    # Table 1's evaluation is untouched
    assert set(json.loads((run_dir / "eval" / "metrics.json").read_text())) == set(evaluated_runs(paper()))


def test_an_invalid_combination_in_a_recipe_is_refused_before_anything_trains(tmp_path):
    """The recipe is checked against the registries where the demo reads it: a P x K sampler with a loss
    of query-positive pairs, an unknown loss, an unknown re-ranking."""
    from detret.config.recipes import parse_recipe

    base = load_pipeline_config(None, [f"run_dir={tmp_path}"], cwd=tmp_path)
    check_recipe(SEEDS, base)  # the shipped recipe is valid
    bad = {"models": {"m": {"loss": "ap", "shop_crops": "detected", "train": {"sampler": "pk"}}}}
    with pytest.raises(InputError, match="sampler=pk is for the losses npair, lifted, angular, batch-hard"):
        check_recipe(parse_recipe(bad, "mine.yaml"), base)
    with pytest.raises(InputError, match="--loss 'triplett' is not one of triplet, ap"):
        check_recipe(parse_recipe({"models": {"m": {"loss": "triplett", "shop_crops": "full"}}}, "mine.yaml"), base)
    rerank = {"models": {"m": {"loss": "ap", "shop_crops": "full"}}, "rerank": {"run": "m", "methods": ["qe"]}}
    with pytest.raises(InputError, match="mine.yaml: rerank.methods 'qe' is not one of none, aqe"):
        check_recipe(parse_recipe(rerank, "mine.yaml"), base)
