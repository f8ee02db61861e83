"""tools/benchmark.py: small runs of the benchmarks (their own checks agree) and the met/unmet report."""
import json

import pytest

from tests.helpers import tool


@pytest.fixture(scope="module")
def bench():
    return tool("benchmark")


def test_search_and_eval_benchmarks_check_their_results(bench, tmp_path):
    out = tmp_path / "search.json"
    assert bench.main(["search", "--gallery", "3000", "--queries", "200", "--dim", "64", "--repeat", "1",
                       "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["identical_up_to_float_ties"] and result["speedup"] > 0 and 0 < result["numpy_matmul_share"]
    assert result["machine"]["faiss_blas_kernels"] in (None, "SkylakeX", "Haswell", "Zen", "Prescott") or \
        isinstance(result["machine"]["faiss_blas_kernels"], str)
    out = tmp_path / "eval.json"
    assert bench.main(["eval", "--gallery", "500", "--queries", "50", "--repeat", "1", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["values_agree"] is True
    out = tmp_path / "bootstrap.json"
    assert bench.main(["bootstrap", "--resamples", "20", "--repeat", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["queries"] > 20000 and result["runs"] == 8 and result["metrics_with_intervals_s"] > 0


def test_rerank_benchmark_measures_every_method_in_its_own_process(bench, tmp_path):
    out = tmp_path / "rerank.json"
    assert bench.main(["rerank", "--scale", "0.001", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["dim"] == 128 and set(result["methods"]) == {"none", "aqe", "dba", "diffusion"}
    assert result["methods"]["none"]["time_ratio"] == 1.0
    assert all(m["seconds"] > 0 and m["peak_rss_gib"] > 0 for m in result["methods"].values())
    assert result["dense_matrix_of_largest_gib"] == result["largest_category"] ** 2 * 4 / 2**30


def test_embed_map_measures_bf16_descriptors_and_leaves_the_run_as_it_was(bench, demo_quick):
    out, _ = demo_quick
    run_dir = out / "runs"
    before = sorted(p.name for p in run_dir.iterdir())
    result = tool("benchs.embed_map").bench_embed_map(tool("benchs.common").sub(config=str(out / "demo.yaml"),
                                                                                 model="tri-crops"))
    assert sorted(p.name for p in run_dir.iterdir()) == before
    assert result["min_cosine_bf16_vs_fp32"] > 0.99
    fp32 = json.loads((run_dir / "eval" / "metrics.json").read_text())["tri-crops"]["mean_over_categories"]
    assert result["fp32"] == pytest.approx(fp32)  # the fp32 side is the run's own evaluation
    assert result["map_change_points"] == pytest.approx(100 * abs(result["bf16"]["mAP"] - fp32["mAP"]))
    assert result["queries"] > 0 and result["one_query_weight_points"] >= 100 / result["queries"]


def _result(**changes):
    r = {"mode": "quick", "command": "python tools/benchmark.py all --quick", "machine": {"cores": 2},
         "embed": {"speedup_bf16": 4.3, "batched_bf16_s": 1.0, "baseline_per_image_fp32_s": 4.3, "speedup_fp32": 1.2,
                   "min_cosine_bf16": 0.99998},
         "embed_map": {"model": "tri-crops", "bf16": {"mAP": 0.250}, "fp32": {"mAP": 0.247}, "map_change_points": 0.3,
                       "queries": 157, "one_query_weight_points": 0.2},
         "detect": {"photos": 60, "detector": "R18-FPN 256-512 px", "speedup_fp32": 1.1, "speedup_bf16": 2.5,
                    "share_crops_iou_ge_0.95_fp32": 1.0, "share_crops_iou_ge_0.95_bf16": 0.97},
         "search": [{"dim": 512, "gallery": 40000, "queries": 2000, "speedup": 1.5, "detret_s": 0.16,
                     "numpy_bruteforce_s": 0.24, "identical_top20": True, "identical_up_to_float_ties": True,
                     "numpy_matmul_only_s": 0.15, "numpy_matmul_share": 0.62}],
         "search_full": {"scale": 0.05, "gallery": 20000, "dim": 2048, "queries": 1018, "exact_search_s": 1.0,
                         "peak_rss_gib": 0.5, "compressed": "SQ8", "recall_at_20": 0.99, "memory_ratio": 4.0,
                         "compressed_search_s": 3.0},
         "eval": {"queries": 5000, "gallery": 20000, "speedup": 18.0, "fast_s": 0.7, "sort_reference_s": 12.6,
                  "values_agree": True},
         "end_to_end": {"profile": "quick", "total_s": 130.0, "per_step_s": {"train the detector": 30.0}}}
    r.update(changes)
    return r


def test_targets_are_read_off_the_results(bench):
    rows = {x["target"]: x for x in tool("benchs.all")._targets(_result())}
    assert rows["embed"]["met"] and rows["embed-cosine"]["met"] and rows["embed-map"]["met"] and rows["eval"]["met"]
    # detect: fp32 agrees but is slow, bf16 is fast but changes 3% of the crops -> not met
    assert not rows["detect"]["met"] and "bf16" in rows["detect"]["why_not"]
    assert rows["search"]["met"]   # exact search at 1.5x NumPy's brute force: never slower than NumPy
    slower = _result(search=[{**_result()["search"][0], "speedup": 0.9}])
    slow_row = {x["target"]: x for x in tool("benchs.all")._targets(slower)}["search"]
    assert not slow_row["met"] and slow_row["why_not"]
    assert rows["search-full"]["met"] and rows["end-to-end"]["met"]
    met = {x["target"]: x["met"] for x in tool("benchs.all")._targets(_result(detect={
        **_result()["detect"], "share_crops_iou_ge_0.95_bf16": 0.995}))}
    assert met["detect"]  # bf16 at 2.5x with 99.5% of crops agreeing meets the target
    text = tool("benchs.all")._markdown(tool("benchs.all")._targets(_result()), _result())
    assert "| detect |" in text and "## Not met, and why" in text and "**detect**" in text
    assert text.count("**no**") == 1


def test_catalogue_and_service_benchmarks_run_and_check_themselves(bench, demo_quick, tmp_path):
    """Small sizes: the add lands every photo into both catalogues; the load test ends by itself with
    no error; the memory figure covers both sizes."""
    out, _ = demo_quick
    config = str(out / "demo.yaml")
    add = bench.main(["catalogue-add", "--config", config, "--new", "3", "--repeat", "1", "--out",
                      str(tmp_path / "add.json")])
    assert add == 0
    result = json.loads((tmp_path / "add.json").read_text())
    assert result["new_photos"] == 3 and result["ratio_20k_over_1k"] > 0
    assert bench.main(["serve", "--config", config, "--requests", "4", "--cli-rounds", "1", "--grow-to", "300",
                       "--out", str(tmp_path / "serve.json")]) == 0
    serve = json.loads((tmp_path / "serve.json").read_text())
    assert serve["with_box"]["http"]["errors"] == 0 and serve["with_box"]["speedup_p50"] > 1
    load = serve["with_detection"]
    assert load["1_client"]["errors"] == load["8_clients"]["errors"] == 0
    assert load["8_clients"]["requests"] == 8 * 2 and load["throughput_ratio_8_over_1"] > 0
    assert set(serve["memory_mib"]) == {str(serve["catalogue_photos"]), "300"}
