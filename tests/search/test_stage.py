"""`detret search --protocol all` and `--rerank`: the stage's rankings and what eval reads back, on the quick demo's
descriptors (copied: the session's demo is not modified)."""
import json
import shutil

import numpy as np
import pytest

from detret.cli.app import main
from detret.config.pipeline import load_pipeline_config
from detret.embed.artifact import read_descriptors
from detret.evaluate.protocol import evaluate_descriptors
from detret.evaluate.stage import run_eval
from detret.runs.stage import StaleArtifactError
from detret.search.rerank import Rerank, scorer
from detret.search.stage import run_search


@pytest.fixture()
def run(demo_quick, tmp_path):
    """A run directory holding a copy of the quick demo's embed-tri-crops, and its pipeline config."""
    out, result = demo_quick
    run_dir = tmp_path / "runs"
    shutil.copytree(result["run_dir"] / "embed-tri-crops", run_dir / "embed-tri-crops")
    pcfg = load_pipeline_config(result["config"], [f"run_dir={run_dir}"], cwd=tmp_path)
    return pcfg, run_dir


def test_protocol_all_searches_one_index_of_every_shop_photo(run):
    pcfg, run_dir = run
    summary = run_search(pcfg, "tri-crops", k=5, protocol="all", use_gpu=False)
    assert summary["folder"] == "search-tri-crops@all"
    assert (run_dir / "search-tri-crops@all/indexes/all.faiss").is_file()
    gallery, grows = read_descriptors(run_dir / "embed-tri-crops", "gallery")
    queries, _ = read_descriptors(run_dir / "embed-tri-crops", "queries")
    top = np.load(run_dir / "search-tri-crops@all" / "topk_rows.npy")
    scores = queries @ gallery.T
    for q in range(len(queries)):  # a full sort over every shop photo, categories ignored
        assert top[q].tolist() == np.lexsort((np.arange(len(grows)), -scores[q]))[:5].tolist()
    assert len({grows[j].category for j in top.ravel()}) > 1


def test_a_re_ranked_run_is_an_eval_column_with_the_settings_it_was_searched_with(run):
    pcfg, run_dir = run
    settings = Rerank(method="dba", alpha=2.0, k=3)
    run_search(pcfg, "tri-crops", k=5, rerank=settings, use_gpu=False)
    recorded = json.loads((run_dir / "search-tri-crops+dba" / "summary.json").read_text())["rerank"]
    assert recorded == {"method": "dba", "alpha": 2.0, "k": 3}
    results = run_eval(pcfg, [], bootstrap=0)  # default: every descriptor run, then every re-ranked one
    assert list(results) == ["tri-crops", "tri-crops+dba"]
    gallery, grows = read_descriptors(run_dir / "embed-tri-crops", "gallery")
    queries, qrows = read_descriptors(run_dir / "embed-tri-crops", "queries")
    expected = evaluate_descriptors(gallery, grows, queries, qrows, scorer=scorer(settings))
    assert results["tri-crops+dba"]["mean_over_categories"] == pytest.approx(expected["mean_over_categories"])
    assert results["tri-crops+dba"]["mean_over_categories"] != results["tri-crops"]["mean_over_categories"]
    with pytest.raises(StaleArtifactError, match=r"'tri-crops\+aqe' \(detret search tri-crops --rerank aqe\) has not"):
        run_eval(pcfg, ["tri-crops+aqe"], out_name="eval-x")
    # searched again with other settings: the evaluation built on the old ones is stale, never silently mixed
    run_search(pcfg, "tri-crops", k=5, rerank=Rerank(method="dba", k=4), use_gpu=False, force=True)
    with pytest.raises(StaleArtifactError, match="tri-crops\\+dba:search differs"):
        run_eval(pcfg, [], bootstrap=0)


def test_the_cli_names_re_ranking_and_protocol_options(run, capsys):
    pcfg, run_dir = run
    with pytest.raises(SystemExit) as exc:
        main(["--set", f"run_dir={run_dir}", "--set", "device=cpu", "search", "tri-crops", "--rerank", "diffusion",
              "--truncation", "30", "--kq", "3", "--no-gpu"])
    assert exc.value.code == 0
    assert "search-tri-crops+diffusion: top 50" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["--set", f"run_dir={run_dir}", "search", "tri-crops", "--rerank", "krnn"])
    assert exc.value.code == 2 and "krnn" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["--set", f"run_dir={run_dir}", "eval", "--protocol", "all", "tri-crops", "--bootstrap", "50"])
    assert exc.value.code == 0 and "Recall@20" in capsys.readouterr().out
    assert (run_dir / "eval-all" / "table.md").read_text().count("Recall@5") > 0
