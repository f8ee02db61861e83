"""The paper's Tables 2 and 3: our best runs beside the published numbers, which are data and never mixed in."""
import numpy as np
import pytest

from detret.evaluate.published import best_runs, comparison_table, comparison_tables, published


def _result(map_, acc20_by_cat):
    per_cat = {c: {"mAP": map_, "Acc@20": v} for c, v in acc20_by_cat.items()}
    return {"per_category": per_cat,
            "mean_over_categories": {"mAP": map_, "Acc@1": 0.1, "Acc@20": float(np.mean(list(acc20_by_cat.values())))}}


def test_the_published_averages_are_the_means_of_their_columns():
    """A transcription check: every printed average equals the mean of the printed per-category values."""
    for column in published()["table2"]["columns"]:
        if column["average"] is not None:
            assert np.mean(list(column["values"].values())) == pytest.approx(column["average"], abs=0.06), column
        assert set(column["values"]) == set(published()["table2"]["categories"])


def test_best_single_and_ensemble_by_mean_map_re_ranked_runs_being_neither():
    cats = {"bags": 0.5, "tops": 0.7}
    results = {"tri-crops": _result(0.30, cats), "ap-crops": _result(0.32, cats), "Crops": _result(0.35, cats),
               "Tris": _result(0.31, cats), "Crops+aqe": _result(0.90, cats)}
    assert best_runs(results, ["Crops", "Tris"]) == ("ap-crops", "Crops")
    assert best_runs({"tri-crops": results["tri-crops"]}, []) == ("tri-crops", None)


def test_our_columns_carry_our_values_and_the_published_ones_stay_apart():
    cats = {c: 0.5 for c in published()["table2"]["categories"]}
    cats["tops"] = 0.9
    results = {"tri-crops": _result(0.3, cats), "Crops": _result(0.4, {**cats, "bags": 0.2})}
    table = comparison_table(results, ["Crops"], synthetic=True)
    assert table.header[1] == "ours: best model (tri-crops, synthetic data)"
    assert table.header[2] == "ours: best ensemble (Crops, synthetic data)"
    assert all(h.startswith("published: ") for h in table.header[3:])
    rows = {r[0]: r for r in table.rows}
    assert rows["tops"][1] == "90.0" and rows["bags"][2] == "20.0"
    assert rows["tops"][table.header.index("published: Kucer & Murray 2019, best model")] == "59.3"
    mean_ours = 100 * results["tri-crops"]["mean_over_categories"]["Acc@20"]
    assert rows["average over categories"][1] == f"{mean_ours:.1f}"  # our own mean, no published value in it
    assert rows["average over categories"][table.header.index("published: Kucer & Murray 2019, best model")] == "57.6"
    assert "not comparable" in table.notes[0] and any("ICCV 2015" in n for n in table.notes[1:])
    subset = comparison_table(results, ["Crops"], "table3")
    assert [r[0] for r in subset.rows] == ["dresses", "outerwear", "skirts", "tops"]
    assert "not comparable" not in subset.notes[0]


def test_no_acc20_no_tables():
    results = {"tri-crops": {"per_category": {}, "mean_over_categories": {"mAP": 0.2, "Acc@1": 0.1}}}
    assert comparison_tables(results, [], synthetic=False) == []
