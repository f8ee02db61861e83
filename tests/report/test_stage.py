"""The report: its examples are chosen as documented, and the page works in a real headless Chromium."""
import json

from PIL import Image

from detret.report.stage import select_examples
from tests.helpers import CHROMIUM_FLAGS, chromium_binary


def _q(row, cat, product, result_products):
    return {"query_row": row, "category": cat, "product_id": product, "photo_id": 1000 + row,
            "results": [[i, p, 1.0 - i / 10] for i, p in enumerate(result_products)]}


def test_select_examples_mixes_successes_and_failures_over_categories():
    rankings = [_q(0, "bags", 1, [1, 2]), _q(1, "bags", 1, [1, 3]), _q(2, "tops", 5, [5]),
                _q(3, "bags", 2, [3, 4, 5]), _q(4, "tops", 6, [7, 8]), _q(5, "tops", 7, [8, 7]),  # 5: not top-1, in top 7
                _q(6, "hats", 9, [])]                                                           # no result: neither
    picked = select_examples(rankings, 4, seed=0)
    rows = [p["query_row"] for p in picked]
    hits, misses = rows[:2], rows[2:]
    assert set(misses) == {3, 4}                     # the only failures
    assert len(hits) == 2 and {rankings[r]["category"] for r in hits} == {"bags", "tops"}  # spread over categories
    assert 5 not in rows and 6 not in rows
    assert select_examples(rankings, 4, seed=0) == picked            # seeded
    assert [p["query_row"] for p in select_examples(rankings, 10, seed=1)].count(3) == 1
    # not enough failures: filled with successes
    assert len(select_examples(rankings[:3], 3)) == 3


def test_report_files_and_examples(demo_quick):
    _, result = demo_quick
    report = result["run_dir"] / "report"
    figures = {p.name for p in (report / "figures").glob("*.png")}
    assert {"category_bars.png", "acc_at_k.png", "retrieval_examples.png", "fallback_rates.png"} <= figures
    examples = json.loads((report / "examples.json").read_text())
    rankings = {json.loads(l)["query_row"]: json.loads(l)
                for l in (result["run_dir"] / f"search-{examples['retrieval'][0]['run']}" / "rankings.jsonl").open()}
    for ex in examples["retrieval"]:
        assert rankings[ex["query_row"]]["photo_id"] == ex["photo_id"]
    # Figure 4: shop photos drawn at random whatever their rule, the same as a seeded draw done here
    import random

    from detret.detect.artifact import read_artifact
    from detret.report.stage import _detection_panels

    shop = [e for e in examples["detections"] if e["domain"] == "shop"]
    records = list(read_artifact(result["run_dir"] / "detect-shop" / "detections.jsonl"))
    redrawn = _detection_panels(records, result["run_dir"].parent / "street2shop", "shop", 6, random.Random(0))[1]
    assert shop == redrawn and len(shop) == 6
    html = (report / "index.html").read_text()
    assert "crop covers the product" in html
    assert "http://" not in html and "https://" not in html and "<script" not in html  # self-contained


def test_report_opens_in_headless_chromium(demo_quick, tmp_path):
    from playwright.sync_api import sync_playwright

    _, result = demo_quick
    page_path = result["run_dir"] / "report" / "index.html"
    metrics = json.loads((result["run_dir"] / "eval" / "metrics.json").read_text())
    n_categories = len(next(iter(metrics.values()))["per_category"])
    errors, failed_requests = [], []
    shot = tmp_path / "report.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_binary(), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("requestfailed", lambda r: failed_requests.append(r.url))
            page.goto(page_path.as_uri(), wait_until="load")
            assert page.title().startswith("detret report")
            header = page.locator("#table1 thead th").all_inner_texts()
            assert header[:2] == ["category", "metric"] and set(header[2:]) >= {"tri-full", "Crops"}
            # (categories + two means) x (mAP, Acc@1, Acc@20)
            assert page.locator("#table1 tbody tr").count() == (n_categories + 2) * 3
            assert page.locator("#reading li").count() >= 4
            images = page.evaluate("Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])")
            assert len(images) >= 4 and all(ok and width > 0 for _, ok, width in images), images
            for fig_id in ("fig-bars", "fig-acc", "fig-retrieval", "fig-fallback"):
                assert page.locator(f"#{fig_id} img").count() == 1
            assert page.locator("#manifest tbody tr").count() >= 20
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert errors == [] and failed_requests == []
    with Image.open(shot) as im:
        assert im.width == 1280 and im.height > 2000
