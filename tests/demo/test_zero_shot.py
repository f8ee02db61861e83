"""`detret demo --recipe zero-shot`: a foundation model without training beside the trained models, its
ensemble with one, and a reading with paired intervals; the tests use a tiny open_clip model saved here
(random weights: the numbers are the mechanism's, not a result)."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from detret.config.recipes import load_recipe, parse_recipe
from detret.errors import InputError
from detret.evaluate.zero_shot import read_zero_shot, zero_shot_markdown
from detret.retrieval.backbones import PretrainedWeightsMissing
from tests.retrieval import tiny_foundation as tiny

SHIPPED = load_recipe("zero-shot")


def _runs(means, seed=0):
    """(metrics, per_query) whose per-query AP is a shared difficulty plus the run's mean: exact differences."""
    difficulty = np.random.default_rng(seed).uniform(-0.1, 0.1, size=200)
    difficulty -= difficulty.mean()
    results, per_query = {}, {}
    for run, m in means.items():
        per_query[run] = {"tops": {"queries": [[i, 0] for i in range(200)], "ap": list(m / 100 + difficulty),
                                   "first_rank": [1] * 200}}
        results[run] = {"mean_over_categories": {"mAP": m / 100}}
    return results, per_query


def test_the_reading_says_whether_training_pays():
    results, per_query = _runs({"tri-crops": 30, "ap-crops": 45, "fashion-siglip": 40, "ap+siglip": 47})
    findings = read_zero_shot(results, per_query, SHIPPED)
    text = {f.text.split(" ")[0]: f.text for f in findings if f.question == "training"}
    assert "-10.0 [-10.0, -10.0]" in text["tri-crops"] and "foundation model is better here" in text["tri-crops"]
    assert "+5.0 [+5.0, +5.0]" in text["ap-crops"] and "training pays here" in text["ap-crops"]
    ensembles = [f.text for f in findings if f.question == "zero-shot ensembles"]
    assert len(ensembles) == 2 and all("the ensemble is better" in t for t in ensembles)
    assert "Does training pay on this data?" in zero_shot_markdown(findings)


def test_a_recipe_descriptor_is_checked_where_it_is_read(tmp_path):
    with pytest.raises(InputError, match="descriptors.x.descriptor"):
        parse_recipe({"descriptors": {"x": {"descriptor": "clip:ViT"}}}, str(tmp_path / "r.yaml"))
    with pytest.raises(InputError, match="both a model and a descriptor"):
        parse_recipe({"models": {"a": {"loss": "ap", "shop_crops": "full"}},
                      "descriptors": {"a": {"descriptor": "hf:x/y"}}}, str(tmp_path / "r.yaml"))
    recipe = parse_recipe({"descriptors": {"z": {"descriptor": "hf:x/y", "weights": "models/z"}}},
                          str(tmp_path / "r.yaml"))
    assert recipe.descriptors[0].weights == (tmp_path / "models" / "z").resolve()


def test_the_zero_shot_demo_runs_on_the_default_demos_crops(demo_quick, tmp_path):
    from detret.demo.run import run_demo

    src, _ = demo_quick
    out = tmp_path / "demo"
    shutil.copytree(src, out)
    with pytest.raises(PretrainedWeightsMissing, match="Marqo/marqo-fashionSigLIP"):   # offline, not cached
        run_demo(out, quick=True, overrides=["device=cpu"], recipe="zero-shot")
    tiny.save_open_clip(tmp_path / "recipes" / "tiny-clip")
    recipe = Path(SHIPPED.source).read_text().replace(
        "    shop_crops: detected\n    column: Marqo-FashionSigLIP", "    weights: tiny-clip\n    shop_crops: detected\n"
        "    column: Marqo-FashionSigLIP")
    (tmp_path / "recipes" / "zero-shot.yaml").write_text(recipe)
    result = run_demo(out, quick=True, overrides=["device=cpu"], recipe=tmp_path / "recipes" / "zero-shot.yaml")
    steps = {s["step"]: s["status"] for s in result["steps"]}
    assert steps["train ap-crops (Kucer & Murray 2019: GeM, AP loss (listwise))"] == "reused"
    assert list(result["results"]) == ["tri-crops", "ap-crops", "fashion-siglip", "ap+siglip"]
    run_dir = Path(result["run_dir"])
    models = json.loads((run_dir / "embed-fashion-siglip" / "models.json").read_text())["models"]
    assert models[0]["meta"]["library"] == "open_clip" and models[0]["meta"]["dim"] == 24
    reading = (out / "demo" / "reading-zero-shot.md").read_text()
    assert "Does training pay on this data?" in reading and "ap-crops (trained) against Marqo-FashionSigLIP" in reading
    assert (run_dir / "eval-zero-shot" / "table.md").is_file()
