"""The reading of Table 1: differences computed from the metrics, agreement with the paper stated."""
from detret.evaluate.reading import read_table, reading_markdown, table_order


def _r(m, a1, a20=0.5):
    return {"mean_over_categories": {"mAP": m, "Acc@1": a1, "Acc@20": a20}}


def test_findings_are_the_measured_differences():
    results = {"tri-full": _r(0.30, 0.20), "tri-crops": _r(0.25, 0.22), "ap-full": _r(0.28, 0.18),
               "ap-crops": _r(0.35, 0.30), "Crops": _r(0.40, 0.31), "Tris": _r(0.29, 0.2), "mAPs": _r(0.36, 0.3),
               "Fulls": _r(0.27, 0.1)}
    findings = read_table(results)
    crop = [f for f in findings if f.question == "cropping"]
    assert "mean mAP by -5.0 and Acc@1 by +2.0" in crop[0].text and crop[0].agrees_with_paper is False
    assert "mean mAP by +7.0 and Acc@1 by +12.0" in crop[1].text and crop[1].agrees_with_paper is True
    ens = {f.text.split(" ")[0]: f for f in findings if f.question == "ensembles"}
    assert "mAP +5.0, Acc@1 +1.0" in ens["Crops"].text and ens["Crops"].agrees_with_paper  # best member ap-crops
    assert "mAP -1.0" in ens["Tris"].text and ens["Tris"].agrees_with_paper is False   # best member tri-full
    assert "mAP -3.0" in ens["Fulls"].text
    cross = [f for f in findings if f.text.startswith("Combining")][0]
    assert "mAP 40.0" in cross.text and "mAP 36.0" in cross.text and cross.agrees_with_paper
    losses = [f for f in findings if f.question == "losses"]
    assert "mAP -2.0, Acc@1 -2.0, Acc@20 +0.0" in losses[0].text
    assert "Do the ensembles help?" in reading_markdown(findings)


def test_only_pairs_present_are_read_and_order_follows_table_one():
    assert read_table({"tri-full": _r(0.3, 0.2), "other": _r(0.1, 0.1)}) == []
    assert "No run pairs" in reading_markdown([])
    assert table_order(["zeta", "Crops", "tri-full", "ap-crops"]) == ["tri-full", "ap-crops", "Crops", "zeta"]
