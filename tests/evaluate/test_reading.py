"""The reading of Table 1: measured differences, each with its paired interval; noise is never an effect."""
import numpy as np

from detret.evaluate.reading import NOISE, UNTESTED, read_table, reading_markdown, table_order


def _r(m, a1, a20=0.5):
    return {"mean_over_categories": {"mAP": m, "Acc@1": a1, "Acc@20": a20}}


def _run(ap_by_cat, rank_by_cat):
    """(metrics.json entry, per_query.json entry) of per-query AP values and first-positive ranks."""
    per_query = {c: {"queries": [[i, 0] for i in range(len(ap))], "ap": list(map(float, ap)),
                     "first_rank": [int(r) for r in rank_by_cat[c]]} for c, ap in ap_by_cat.items()}
    means = {"mAP": np.mean([np.mean(v) for v in ap_by_cat.values()])}
    for k in (1, 20):
        means[f"Acc@{k}"] = np.mean([np.mean(np.asarray(r) <= k) for r in rank_by_cat.values()])
    return {"mean_over_categories": means}, per_query


def test_without_per_query_values_the_differences_are_given_but_untested():
    results = {"tri-full": _r(0.30, 0.20), "tri-crops": _r(0.25, 0.22), "ap-full": _r(0.28, 0.18),
               "ap-crops": _r(0.35, 0.30), "Crops": _r(0.40, 0.31), "Tris": _r(0.29, 0.2), "mAPs": _r(0.36, 0.3),
               "Fulls": _r(0.27, 0.1)}
    findings = read_table(results)
    crop = [f for f in findings if f.question == "cropping"]
    assert "mean mAP by -5.0 and Acc@1 by +2.0" in crop[0].text and UNTESTED in crop[0].text
    assert "mean mAP by +7.0 and Acc@1 by +12.0" in crop[1].text
    assert all(f.agrees_with_paper is None for f in findings)  # nothing tested, nothing claimed
    ens = {f.text.split(" ")[0]: f for f in findings if f.question == "ensembles"}
    assert "mAP +5.0, Acc@1 +1.0" in ens["Crops"].text  # best member ap-crops
    assert "mAP -1.0" in ens["Tris"].text and "mAP -3.0" in ens["Fulls"].text
    cross = [f for f in findings if f.text.startswith("Combining")][0]
    assert "mAP 40.0" in cross.text and "mAP 36.0" in cross.text
    losses = [f for f in findings if f.question == "losses"]
    assert "mAP -2.0 (untested), Acc@1 -2.0 (untested), Acc@20 +0.0 (untested)" in losses[0].text
    assert "Do the ensembles help?" in reading_markdown(findings)


def test_an_effect_is_stated_only_when_its_paired_interval_excludes_zero():
    rng = np.random.default_rng(0)
    base = {c: rng.uniform(0.1, 0.6, size=300) for c in ("bags", "tops")}
    ranks = {c: rng.integers(1, 40, size=300) for c in base}
    # tri-crops: every query a little better (a clear effect); ap-crops: the same queries, noise of either sign
    clear = {c: v + 0.05 for c, v in base.items()}
    noisy = {c: np.clip(v + rng.normal(0, 0.05, size=v.size), 0, 1) for c, v in base.items()}
    runs = {"tri-full": _run(base, ranks), "tri-crops": _run(clear, ranks), "ap-full": _run(base, ranks),
            "ap-crops": _run({c: v - v.mean() + base[c].mean() for c, v in noisy.items()}, ranks)}
    results = {n: r for n, (r, _) in runs.items()}
    per_query = {n: q for n, (_, q) in runs.items()}
    findings = {f.text.split(",")[0]: f for f in read_table(results, per_query) if f.question == "cropping"}
    tri, ap = findings["With the triplet loss"], findings["With the AP loss"]
    assert "mean mAP by +5.0 [+5.0, +5.0]" in tri.text and "cropping helps here, as in the paper" in tri.text
    assert tri.agrees_with_paper is True
    assert NOISE in ap.text and "helps" not in ap.text and ap.agrees_with_paper is None
    losses = [f for f in read_table(results, per_query) if f.question == "losses"]
    assert "Acc@1 +0.0 [+0.0, +0.0] (within noise)" in losses[1].text  # same ranks: no difference at all


def test_queries_one_run_could_not_score_are_left_out_of_both():
    rng = np.random.default_rng(1)
    ap = {"bags": rng.uniform(size=50)}
    ranks = {"bags": rng.integers(1, 30, size=50)}
    full, full_q = _run(ap, ranks)
    crops, crops_q = _run({"bags": ap["bags"][:40] + 0.1}, {"bags": ranks["bags"][:40]})
    findings = read_table({"tri-full": full, "tri-crops": crops}, {"tri-full": full_q, "tri-crops": crops_q})
    assert "mean mAP by +10.0 [+10.0, +10.0]" in findings[0].text  # on the 40 queries both scored


def test_only_pairs_present_are_read_and_order_follows_table_one():
    assert read_table({"tri-full": _r(0.3, 0.2), "other": _r(0.1, 0.1)}) == []
    assert "No run pairs" in reading_markdown([])
    assert table_order(["zeta", "Crops", "tri-full", "ap-crops"]) == ["tri-full", "ap-crops", "Crops", "zeta"]
