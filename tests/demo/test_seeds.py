"""`detret demo --profile seeds`: each seed system's configuration, its reading, and the run on the quick demo."""
import json
import shutil
from pathlib import Path

import pytest

from detret.config.pipeline import load_pipeline_config
from detret.demo.seeds import SEED_RUNS, SEED_SYSTEMS, read_seeds, seed_steps, system_config
from detret.runs.layout import RunLayout


def _result(map_percent):
    return {"mean_over_categories": {"mAP": map_percent / 100.0}}


def test_the_reading_sets_each_system_beside_its_papers_claim():
    results = {"tri-crops": _result(40), "ap-crops": _result(41), "gajic-shared": _result(30),
               "gajic-ss": _result(32), "darn": _result(38), "npair": _result(50), "lifted": _result(35),
               "angular": _result(45), "batch-hard": _result(44), "morelli": _result(42)}
    findings = {f.question: f for f in read_seeds(results)}
    assert findings["streams"].agrees_with_paper is True and "+2.0 points" in findings["streams"].text
    assert findings["attributes"].agrees_with_paper is False and "-2.0 points" in findings["attributes"].text
    assert findings["hardest"].agrees_with_paper is True
    assert findings["metric losses"].agrees_with_paper is True
    assert "npair 50.0, angular 45.0, batch-hard 44.0, lifted 35.0" in findings["metric losses"].text
    assert "Best system here: npair (mean mAP 50.0); worst: gajic-shared (30.0)" in findings["best"].text
    results["lifted"] = _result(60)
    assert {f.question: f for f in read_seeds(results)}["metric losses"].agrees_with_paper is False
    del results["gajic-ss"]
    assert "streams" not in {f.question for f in read_seeds(results)}


def test_each_printed_command_gives_the_systems_config(tmp_path):
    """The CLI command a seed step prints (--set ... train-retrieval ...) rebuilds the config the demo trains."""
    base = load_pipeline_config(None, [f"run_dir={tmp_path}"], cwd=tmp_path)
    steps = {s.title.split()[1]: s for s in seed_steps("detret", RunLayout(tmp_path), 20) if s.title.startswith("train")}
    assert list(steps) == list(SEED_RUNS)
    for system in SEED_SYSTEMS:
        words = steps[system.name].command.split()
        sets = [words[i + 1] for i, w in enumerate(words) if w == "--set"]
        from_command = load_pipeline_config(None, [f"run_dir={tmp_path}", *sets], cwd=tmp_path)
        assert from_command.retrieval.train == system_config(base, system).retrieval.train, system.name
        assert f"--loss {system.loss}" in steps[system.name].command
    ss = system_config(base, next(s for s in SEED_SYSTEMS if s.name == "gajic-ss")).retrieval.train
    assert (ss.pooling, ss.streams, ss.init_from) == ("mac", "domain", "gajic-shared")
    npair = system_config(base, next(s for s in SEED_SYSTEMS if s.name == "npair")).retrieval.train
    assert (npair.sampler, npair.pk_products, npair.pk_photos) == ("pk", 30, 2)


@pytest.mark.slow
def test_seeds_demo_trains_every_system_on_the_default_demos_crops(demo_quick, tmp_path):
    from detret.demo.run import SEEDS_TIMINGS_FILE, run_demo
    from detret.retrieval.model import load_checkpoint

    src, _ = demo_quick
    out = tmp_path / "demo"
    shutil.copytree(src, out)
    result = run_demo(out, quick=True, overrides=["device=cpu"], systems="seeds")
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
    assert json.loads((out / SEEDS_TIMINGS_FILE).read_text())["steps"]
    reading = (out / "demo" / "reading-seeds.md").read_text()
    assert "Gajic & Baldrich" in reading and "Ibrahim et al.'s losses by mean mAP" in reading
    assert (run_dir / "eval-seeds" / "table.md").is_file()
    # Table 1's evaluation is untouched
    assert set(json.loads((run_dir / "eval" / "metrics.json").read_text())) == {
        "tri-full", "tri-crops", "ap-full", "ap-crops", "Tris", "mAPs", "Fulls", "Crops"}
