"""detret.runs.layout: the one place that names a run's folders and the paper's runs."""
from detret.runs.layout import RunLayout


def test_folders_of_a_run(tmp_path):
    layout = RunLayout(tmp_path / "runs")
    run = tmp_path / "runs"
    assert layout.detector == run / "detector"
    assert layout.detect("shop") == layout.detect_shop == run / "detect-shop"
    assert layout.detect("street", "train") == run / "detect-street-train"
    assert layout.shop_detections == run / "detect-shop" / "detections.jsonl"
    assert layout.retrieval("tri-crops") == run / "retrieval-tri-crops"
    assert (layout.embed("Crops"), layout.search("Crops")) == (run / "embed-Crops", run / "search-Crops")
    assert layout.embed_df2("m") == run / "embed-df2-m"
    assert (layout.eval, layout.eval_df2, layout.report) == (run / "eval", run / "eval-df2", run / "report")
    assert layout.demo_timings == tmp_path / "demo" / "timings.json"
    assert layout.modanet_split == run / "data" / "modanet_split.json"


def test_listings_read_the_folders(tmp_path):
    layout = RunLayout(tmp_path)
    assert layout.descriptor_runs() == [] and layout.trained_models() == []
    for name in ("embed-a", "embed-df2-x", "embed-b", "retrieval-tri-full", "search-a"):
        (tmp_path / name).mkdir()
    (tmp_path / "embed-a" / "manifest.json").write_text("{}")
    assert layout.descriptor_runs() == ["a", "b"]  # DeepFashion2 descriptors are not Street2Shop runs
    assert layout.trained_models() == ["tri-full"] and layout.searched_runs() == ["a"]
    assert layout.stage_folders() == [tmp_path / "embed-a"]
