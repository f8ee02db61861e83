"""`detret demo --quick`: every stage runs, the table and reading are saved, a rerun reuses everything."""
import json

import pytest

from detret.cli.app import main
from detret.config.recipes import paper
from detret.demo.recipe_steps import evaluated_runs, reranked_columns

TABLE_RUNS = paper().columns()
EVALUATED_RUNS = evaluated_runs(paper())
RERANKED_RUNS = reranked_columns(paper())
from detret.runs.manifest import sha256_file
from detret.runs.stage import stage_status


def test_every_step_ran_and_left_a_complete_stage(demo_quick):
    out, result = demo_quick
    steps = json.loads((out / "demo" / "timings.json").read_text())["steps"]
    # data, detector + 3 detect (shop, street test and train: ap-masks' masks), 5 train, 5 embed, 4 ensembles,
    # 2 whiten, 11 search, 3 re-rank, eval, 4 df2, report
    assert len(steps) == 1 + 4 + 5 + 5 + 4 + 2 + 11 + 3 + 1 + 4 + 1
    assert [s["status"] for s in steps] == ["ran"] * len(steps)
    assert all(s["seconds"] >= 0 for s in steps)
    run_dir = result["run_dir"]
    for folder in ["detector", "detect-shop", "detect-street-test", "detect-street-train", "eval", "report"] + \
            [f"retrieval-{n}" for n in ("tri-full", "tri-crops", "ap-full", "ap-crops", "ap-masks")] + \
            [f"embed-{n}" for n in TABLE_RUNS] + [f"search-{n}" for n in EVALUATED_RUNS]:
        assert stage_status(run_dir / folder).state == "done", folder
    assert stage_status(out).state == "done"  # the dataset


def test_table_has_every_model_and_the_reading_matches_the_metrics(demo_quick):
    out, result = demo_quick
    run_dir = result["run_dir"]
    table = (run_dir / "eval" / "table.md").read_text()
    header = table.splitlines()[0]
    assert all(f" {n} " in header for n in EVALUATED_RUNS)
    metrics = json.loads((run_dir / "eval" / "metrics.json").read_text())
    assert set(EVALUATED_RUNS) <= set(metrics)
    per_query = json.loads((run_dir / "eval" / "per_query.json").read_text())
    assert set(per_query) == set(metrics)
    reading = (out / "demo" / "reading.md").read_text()
    # the cropping finding quotes the measured difference of mean mAP, recomputed here, and its interval
    d = 100 * (metrics["tri-crops"]["mean_over_categories"]["mAP"] - metrics["tri-full"]["mean_over_categories"]["mAP"])
    assert f"changes mean mAP by {d:+.1f} [" in reading
    assert "Do the ensembles help?" in reading and "Does re-ranking help?" in reading
    for name in RERANKED_RUNS:
        assert f"{name} against Crops: mAP" in reading
    assert "Does whitening keep the accuracy with fewer dimensions?" in reading
    assert "Do mask crops help?" in reading and "ap-masks (the background removed by the detection's mask)" in reading
    embed = json.loads((run_dir / "embed-ap-masks" / "models.json").read_text())
    assert embed["crop"] == "mask" and embed["models"][0]["meta"]["training"]["train"]["crop"] == "mask"
    for source, whitened in paper().whitened():
        assert f"{whitened} (lw, 8x fewer dimensions) against {source}: mAP" in reading
    table2 = (run_dir / "eval" / "table2.md").read_text()
    assert "ours: best ensemble (" in table2 and "published: Kiapour et al. 2015" in table2
    assert "not comparable" in table2
    page = (run_dir / "report" / "index.html").read_text()
    assert 'id="table2"' in page and 'id="table3"' in page
    # every finding either names an effect whose interval excludes 0, or says it is within noise
    for line in reading.splitlines():
        if line.startswith("- ") and "within noise" not in line:
            lo, hi = (float(x) for x in line.split("[", 1)[1].split("]", 1)[0].split(", "))
            assert lo > 0 or hi < 0, line


def test_rerun_through_the_cli_reuses_every_stage_and_prints_the_table(demo_quick, capsys):
    out, _ = demo_quick
    metrics = out / "runs" / "eval" / "metrics.json"
    before = sha256_file(metrics)
    with pytest.raises(SystemExit) as exc:
        main(["--set", "device=cpu", "demo", "--quick", "--out", str(out)])
    assert exc.value.code == 0
    printed = capsys.readouterr().out
    assert "mean over categories" in printed and "Report:" in printed and "Crops+diffusion" in printed
    steps = json.loads((out / "demo" / "timings.json").read_text())["steps"]
    assert {s["status"] for s in steps} == {"reused"}
    assert all("seconds_when_run" in s for s in steps)
    assert sha256_file(metrics) == before


def test_the_printed_commands_serve_the_best_run(demo_quick, tmp_path, capsys):
    """The demo ends with the two commands that make its best run a served catalogue; the first one works
    as printed (into a temporary folder here), and the second names that catalogue."""
    import shlex

    from detret.catalogue.store import Catalogue

    out, result = demo_quick
    create, serve = result["serve_commands"]
    servable = [r for r in result["results"] if r not in RERANKED_RUNS]  # re-ranking is a search, not descriptors
    best = max(servable, key=lambda r: result["results"][r]["mean_over_categories"]["mAP"])
    assert f"--run {best} --import-gallery" in create and serve == f"detret serve {out / 'catalogue'}"
    argv = shlex.split(create.replace(str(out / "catalogue"), str(tmp_path / "cat")))
    with pytest.raises(SystemExit) as exc:
        main(argv[1:])
    assert exc.value.code == 0, capsys.readouterr().err
    cat = Catalogue.open(tmp_path / "cat")
    assert cat.card.run == best and cat.summary()["photos"] > 0
    cat.close()
