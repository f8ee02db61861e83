"""Bootstrap intervals of Table 1's metrics: against a plain loop over resamples, and their coverage by simulation."""
import numpy as np
import pytest

from detret.evaluate.bootstrap import (
    curve_intervals,
    metric_intervals,
    paired_difference,
    resample_indices,
    resampled_means,
)
from detret.evaluate.protocol import metrics_from_ranks


def test_vectorised_resamples_equal_a_loop_over_them():
    rng = np.random.default_rng(1)
    values = {"bags": rng.uniform(size=7), "tops": rng.uniform(size=3), "hats": rng.uniform(size=12)}
    indices = resample_indices({c: len(v) for c, v in values.items()}, 50, seed=4)
    per_cat, over_cats, over_queries = resampled_means(values, indices)
    for b in range(50):  # one resample at a time, by hand
        means = {c: float(np.mean([values[c][i] for i in indices[c][b]])) for c in values}
        drawn = [values[c][i] for c in values for i in indices[c][b]]
        for c in values:
            assert per_cat[c][b] == pytest.approx(means[c])
        assert over_cats[b] == pytest.approx(np.mean(list(means.values())))
        assert over_queries[b] == pytest.approx(np.mean(drawn))
    again = resample_indices({c: len(v) for c, v in values.items()}, 50, seed=4)
    assert all(np.array_equal(again[c], indices[c]) for c in values)  # seeded: the same for every run


def test_intervals_sit_around_the_metric_and_shrink_with_more_queries():
    rng = np.random.default_rng(2)
    small = {"mAP": {"a": list(rng.uniform(size=10))}}
    large = {"mAP": {"a": list(rng.uniform(size=1000))}}
    ci_small = metric_intervals(small, 1000, seed=0)["mean_over_queries"]["mAP"]
    ci_large = metric_intervals(large, 1000, seed=0)["mean_over_queries"]["mAP"]
    assert ci_small[0] < np.mean(small["mAP"]["a"]) < ci_small[1]
    assert ci_large[1] - ci_large[0] < (ci_small[1] - ci_small[0]) / 5
    assert metric_intervals(small, 0) is None and metric_intervals({"mAP": {}}, 100) is None


def test_coverage_of_the_95_percent_interval_by_simulation():
    """Draw many benchmarks from known per-category distributions: the interval of the mean over
    categories holds the true value in about 95% of them (percentile bootstrap: a little less at these sizes)."""
    rng = np.random.default_rng(3)
    probs = {"a": 0.3, "b": 0.6, "c": 0.8}          # Acc@K-like 0/1 values per query
    sizes = {"a": 40, "b": 25, "c": 60}
    truth = np.mean(list(probs.values()))
    hits = 0
    trials = 400
    for t in range(trials):
        values = {"Acc@1": {c: list((rng.uniform(size=sizes[c]) < p).astype(float)) for c, p in probs.items()}}
        lo, hi = metric_intervals(values, 400, seed=t)["mean_over_categories"]["Acc@1"]
        hits += lo <= truth <= hi
    coverage = hits / trials
    assert 0.90 <= coverage <= 0.99, coverage


def test_metrics_from_ranks_carry_the_intervals_beside_the_values():
    per_cat = {"tops": {"gallery": 5, "ranks": [[1], [3, 4], None, [2]]},
               "bags": {"gallery": 4, "ranks": [[1, 2], [5]]}}
    plain = metrics_from_ranks(per_cat, (1, 20))
    assert "ci95" not in plain
    result = metrics_from_ranks(per_cat, (1, 20), bootstrap=200, seed=0)
    ci = result["ci95"]
    assert ci["resamples"] == 200 and set(ci["per_category"]) == {"tops", "bags"}
    for cat, row in result["per_category"].items():
        for metric in ("mAP", "Acc@1", "Acc@20"):
            lo, hi = ci["per_category"][cat][metric]
            assert lo <= row[metric] + 1e-12 and row[metric] <= hi + 1e-12
    lo, hi = ci["mean_over_categories"]["mAP"]
    assert lo <= result["mean_over_categories"]["mAP"] <= hi
    assert ci["mean_over_queries"]["Acc@20"] == [1.0, 1.0]  # every scored query has a positive in the top 20


def test_paired_difference_covers_a_known_true_difference_by_simulation():
    """Two runs on the same queries: each query has a difficulty both share, run b is better by a known amount per
    category plus per-query noise. The paired interval holds the true difference in about 95% of the benchmarks,
    and is much narrower than either run's own interval (what the runs share cancels)."""
    rng = np.random.default_rng(5)
    delta = {"a": 0.02, "b": -0.01, "c": 0.05}
    sizes = {"a": 30, "b": 50, "c": 20}
    truth = np.mean(list(delta.values()))
    hits, trials = 0, 400
    for t in range(trials):
        difficulty = {c: rng.uniform(size=n) for c, n in sizes.items()}
        run_a = {c: d + rng.normal(0, 0.05, size=d.size) for c, d in difficulty.items()}
        run_b = {c: d + delta[c] + rng.normal(0, 0.05, size=d.size) for c, d in difficulty.items()}
        paired = paired_difference(run_a, run_b, 400, seed=t)
        lo, hi = paired["ci95"]
        hits += lo <= truth <= hi
    coverage = hits / trials
    assert 0.90 <= coverage <= 0.99, coverage
    own = metric_intervals({"mAP": {c: list(v) for c, v in run_b.items()}}, 400, seed=0)["mean_over_categories"]["mAP"]
    assert (hi - lo) < (own[1] - own[0]) / 2
    assert paired["difference"] == pytest.approx(np.mean([run_b[c].mean() - run_a[c].mean() for c in sizes]))


def test_paired_difference_refuses_runs_on_different_queries():
    with pytest.raises(ValueError, match="same queries"):
        paired_difference({"a": [1.0, 2.0]}, {"a": [1.0]}, 10, seed=0)


def test_curve_intervals_equal_a_loop_over_resamples():
    rng = np.random.default_rng(6)
    ranks = {"a": rng.integers(1, 12, size=9), "b": rng.integers(1, 12, size=15)}
    bands = curve_intervals(ranks, 200, seed=3, max_k=10)
    indices = resample_indices({c: len(r) for c, r in ranks.items()}, 200, seed=3)
    for k in (1, 4, 10):
        samples = [np.mean([np.mean(ranks[c][indices[c][b]] <= k) for c in ranks]) for b in range(200)]
        assert bands[k - 1] == pytest.approx(list(np.percentile(samples, [2.5, 97.5])))
