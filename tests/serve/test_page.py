"""The search page in a real headless Chromium, against `detret serve`'s app on uvicorn (127.0.0.1 only).

Two ways to a result, as a user takes them: click a garment the page shows (shop the look), or drag a
box around the garment and pick its category. The quick demo's detector (a dozen training
iterations) finds no garment with objectness above 0.5, so for the first way the server's detector is
replaced by one that reports the query's annotated box; the second way uses nothing replaced. The query
is an easy case: a test street photo whose top-1 in the batch search is its own product.
"""
import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest
import uvicorn

from detret.detect.crops import Detection
from detret.embed.artifact import read_descriptors
from detret.serve.app import create_app
from tests.helpers import copy_catalogue
from tests.helpers import CHROMIUM_FLAGS, chromium_binary


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(demo_catalogue, tmp_path_factory):
    root, pcfg = demo_catalogue
    app = create_app(copy_catalogue(root, tmp_path_factory.mktemp("page") / "cat"))
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not srv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", app, pcfg
    srv.should_exit = True
    thread.join(timeout=30)


def _easy_query(pcfg):
    """(photo path, category, box, product) of the first test query whose batch top-1 is its product."""
    run = Path(pcfg.run_dir)
    _, rows = read_descriptors(run / "embed-tri-crops", "queries")
    for line in (run / "search-tri-crops" / "rankings.jsonl").read_text().splitlines():
        ranking = json.loads(line)
        if ranking["results"][0][1] == ranking["product_id"]:
            r = rows[ranking["query_row"]]
            photo = Path(pcfg.data.street2shop.root) / "images" / f"{r.photo_id:09d}.jpg"
            return photo, r.category, r.box_xyxy, str(r.product_id)
    pytest.fail("no test query of the demo has its product at rank 1")


def _searches(page) -> int:
    return int(page.evaluate("Number(document.body.dataset.searched || 0)"))


def _wait_searched(page, n: int) -> None:
    """Until the page has finished its n-th search (it counts them in body[data-searched]). A locator, not
    ``wait_for_function``: that one evaluates a string, which the page's Content-Security-Policy forbids."""
    page.locator(f"body[data-searched='{n}']").wait_for(state="attached", timeout=60_000)
    assert _searches(page) == n


def _drag(page, box) -> None:
    geometry = page.evaluate("() => { const r = document.getElementById('photo').getBoundingClientRect(); "
                             "const img = document.getElementById('photo'); "
                             "return [r.left, r.top, r.width / img.naturalWidth]; }")
    left, top, s = geometry
    page.mouse.move(left + box[0] * s + 1, top + box[1] * s + 1)
    page.mouse.down()
    page.mouse.move(left + (box[0] + box[2]) / 2 * s, top + (box[1] + box[3]) / 2 * s, steps=4)
    page.mouse.move(left + box[2] * s - 1, top + box[3] * s - 1, steps=4)
    page.mouse.up()


def test_the_page_finds_the_product_by_a_garment_or_a_drawn_box_and_shows_errors(server, tmp_path, monkeypatch):
    from playwright.sync_api import sync_playwright

    url, app, pcfg = server
    photo, category, box, product = _easy_query(pcfg)
    models = app.state.engine.models
    label = models.card.category_map[category][0]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_binary(), args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        violations = []
        page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
        page.goto(url)
        page.locator("body[data-ready='1']").wait_for(state="attached")
        assert "products" in page.inner_text("#summary")
        # a product link only for http(s) URLs (a catalogue of an older detret may hold others)
        assert page.evaluate("['javascript:alert(1)', 'data:text/html,x', ' javascript:x', 'http://shop.example/p']"
                             ".map(safeUrl)") == [None, None, None, "http://shop.example/p"]

        # 1. shop the look: the garment the detector reports, clicked
        monkeypatch.setattr(models, "detect", lambda photos: [[Detection(tuple(box), label, 0.9, 0.9)] for _ in photos])
        page.set_input_files("#photo-input", str(photo))
        _wait_searched(page, 1)
        garment = page.locator(f".garment[data-category='{category}']").first
        garment.click()
        assert page.locator(".result").first.get_attribute("data-product") == product
        assert page.locator(".result img").first.evaluate("img => img.complete && img.naturalWidth > 0")

        # 2. the user's own box and category, with the real (quick) detector back in place
        monkeypatch.undo()
        page.set_input_files("#photo-input", str(photo))
        _wait_searched(page, 2)
        _drag(page, box)
        page.select_option("#category", category)
        page.click("#search")
        _wait_searched(page, 3)
        assert page.inner_text("#results-title").endswith("(given box)")
        assert page.locator(".result").first.get_attribute("data-product") == product
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        if os.environ.get("DETRET_PAGE_SCREENSHOT"):  # how docs/serve_page.png is made
            page.screenshot(path=os.environ["DETRET_PAGE_SCREENSHOT"], full_page=True)

        # 3. a bad file: the server's reason, shown
        bad = tmp_path / "holiday.jpg"
        bad.write_text("<html><body>Not Found</body></html>")
        page.set_input_files("#photo-input", str(bad))
        _wait_searched(page, 4)
        assert page.locator("#error").is_visible()
        assert "not an image" in page.inner_text("#error")
        assert page.locator(".result").count() == 0
        assert violations == []  # the page works under its Content-Security-Policy
        browser.close()


def test_the_api_docs_render_offline_under_their_content_security_policy(server):
    """/docs is Swagger UI from detret's own assets (no CDN) and works under its policy: no violation, the
    operations listed."""
    from playwright.sync_api import sync_playwright

    url, _, _ = server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_binary(), args=CHROMIUM_FLAGS)
        page = browser.new_page()
        violations, outside = [], []
        page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
        page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(url) else None)
        page.goto(url + "/docs")
        page.locator(".opblock-summary-path", has_text="/api/search").first.wait_for(timeout=90_000)
        browser.close()
    assert violations == [] and [u for u in outside if not u.startswith(("data:", "blob:"))] == []
