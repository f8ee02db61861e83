"""`detret query`: one photo through crop -> embed -> search gives what the batch pipeline gave."""
import json
import re
from pathlib import Path

import numpy as np
import pytest

from detret.cli.app import main
from detret.config.pipeline import load_pipeline_config
from detret.data.categories import load_categories
from detret.data.images import PhotoError
from detret.detect.crops import select_crop
from detret.query.run import default_run, run_query


@pytest.fixture(scope="module")
def built(demo_quick):
    out, result = demo_quick
    return load_pipeline_config(result["config"], ["device=cpu"]), result["run_dir"]


def _queries(run_dir, run):
    rows = [json.loads(l) for l in (run_dir / f"embed-{run}" / "queries_rows.jsonl").open()]
    rankings = [json.loads(l) for l in (run_dir / f"search-{run}" / "rankings.jsonl").open()]
    return rows, rankings


@pytest.mark.parametrize("run", ["tri-full", "Crops"])  # one model, and an ensemble of two descriptor runs
def test_a_test_query_with_its_box_gets_the_search_stage_ranking(built, run):
    pcfg, run_dir = built
    rows, rankings = _queries(run_dir, run)
    root = run_dir.parent / "street2shop" / "images"
    for i in (0, len(rows) // 2, len(rows) - 1):
        row, expected = rows[i], rankings[i]
        assert row["box_xyxy"] is not None
        result = run_query(pcfg, root / f"{row['photo_id']:09d}.jpg", row["category"], box=tuple(row["box_xyxy"]),
                           run=run, k=5)
        got = [(p, pid) for _, p, pid, _, _, _ in result.results]
        assert got == [(p, pid) for p, pid, _ in expected["results"][:5]]
        assert np.allclose([s for _, _, _, s, _, _ in result.results], [s for _, _, s in expected["results"][:5]],
                           atol=1e-4)


def test_without_a_box_the_detector_and_the_shop_crop_policy_choose_the_crop(built):
    pcfg, run_dir = built
    rows, _ = _queries(run_dir, "tri-crops")
    photo = run_dir.parent / "street2shop" / "images" / f"{rows[0]['photo_id']:09d}.jpg"
    result = run_query(pcfg, photo, rows[0]["category"], run="tri-crops", k=3)
    cats = load_categories()
    from PIL import Image

    with Image.open(photo) as im:
        size = im.size
    assert result.crop == select_crop(result.detections, rows[0]["category"], cats.street2shop_to_modanet, size)
    assert len(result.results) == 3


def test_default_run_is_the_best_evaluated(built):
    _, run_dir = built
    metrics = json.loads((run_dir / "eval" / "metrics.json").read_text())
    descriptor_runs = [n for n in metrics if "+" not in n]  # a re-ranked run (Crops+aqe) has no index to query
    assert len(descriptor_runs) < len(metrics)
    best = max(descriptor_runs, key=lambda n: metrics[n]["mean_over_categories"]["mAP"])
    assert default_run(run_dir) == best


def test_bad_inputs_are_named(built, tmp_path):
    pcfg, run_dir = built
    rows, _ = _queries(run_dir, "tri-full")
    photo = run_dir.parent / "street2shop" / "images" / f"{rows[0]['photo_id']:09d}.jpg"
    with pytest.raises(ValueError, match="unknown category 'bag'.*bags"):
        run_query(pcfg, photo, "bag", run="tri-full")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(photo.read_bytes()[:200])
    with pytest.raises(PhotoError, match="broken.jpg"):
        run_query(pcfg, broken, rows[0]["category"], run="tri-full", box=(0, 0, 10, 10))
    with pytest.raises(ValueError, match="empty inside"):
        run_query(pcfg, photo, rows[0]["category"], run="tri-full", box=(5000, 5000, 5100, 5100))


def test_cli_prints_the_results_and_writes_the_grid(built, tmp_path, capsys):
    pcfg, run_dir = built
    rows, rankings = _queries(run_dir, "tri-full")
    photo = run_dir.parent / "street2shop" / "images" / f"{rows[1]['photo_id']:09d}.jpg"
    box = ",".join(str(v) for v in rows[1]["box_xyxy"])
    with pytest.raises(SystemExit) as exc:
        main(["--config", str(run_dir.parent / "demo.yaml"), "--set", "device=cpu", "query", str(photo),
              "--category", rows[1]["category"], "--box", box, "--run", "tri-full", "--k", "4", "--out",
              str(tmp_path)])
    assert exc.value.code == 0
    printed = capsys.readouterr().out
    assert str(rankings[1]["results"][0][0]) in printed
    written = json.loads((tmp_path / "query.json").read_text())
    assert [r["photo_id"] for r in written["results"]] == [p for p, _, _ in rankings[1]["results"][:4]]
    assert (tmp_path / "query.png").stat().st_size > 1000
    with pytest.raises(SystemExit) as exc:
        main(["--config", str(run_dir.parent / "demo.yaml"), "query", str(photo), "--category", "dresses",
              "--box", "1,2,3"])
    assert exc.value.code == 2


def test_query_a_catalogue_from_the_command_line(demo_catalogue, capsys):
    """`detret query --catalogue` searches as the service does: a test query with its box gets the batch
    search's top product."""
    root, pcfg = demo_catalogue
    run_dir = Path(pcfg.run_dir)
    rows, rankings = _queries(run_dir, "tri-crops")
    row, expected = rows[0], rankings[0]
    photo = Path(pcfg.data.street2shop.root) / "images" / f"{row['photo_id']:09d}.jpg"
    box = ",".join(str(v) for v in row["box_xyxy"])
    with pytest.raises(SystemExit) as exc:
        main(["query", str(photo), "--catalogue", str(root), "--category", row["category"], "--box", box, "--k", "1"])
    assert exc.value.code == 0
    printed = capsys.readouterr().out
    assert "crop given box" in printed
    assert re.search(rf"│\s+1\s+│\s+[0-9.]+\s+│\s+{expected['results'][0][1]}\s+│", printed), printed
