"""The service: search answers what the batch pipeline computes, every bad input is a 4xx JSON error and
the server goes on serving, changes need the token, and are found without a restart."""
import io
import json
import threading
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from detret.detect.crops import Detection
from detret.embed.artifact import read_descriptors
from detret.serve.app import create_app
from tests.helpers import copy_catalogue

from .helpers import TOKEN, products_upload, search_photo, street_query


def test_search_with_a_box_gives_the_batch_search_ranking(served):
    client, _, cat, pcfg = served
    rankings = [json.loads(line) for line in
                (Path(pcfg.run_dir) / "search-tri-crops" / "rankings.jsonl").read_text().splitlines()]
    for i in (0, len(rankings) // 2):
        data, category, box, _ = street_query(pcfg, i)
        response = search_photo(client, data, category=category, box=",".join(map(str, box)), k=5)
        assert response.status_code == 200, response.text
        (garment,) = response.json()["garments"]
        assert garment["rule"] == "given box" and garment["category"] == category
        expected = rankings[i]["results"][:5]
        assert [r["product"] for r in garment["results"]] == [str(p) for _, p, _ in expected]
        assert np.allclose([r["score"] for r in garment["results"]], [s for _, _, s in expected], atol=1e-4)
        first = garment["results"][0]
        photo = client.get(first["photo_url"])
        assert photo.status_code == 200 and photo.headers["content-type"] == "image/jpeg"
        stored = Path(pcfg.data.street2shop.root) / "images" / f"{expected[0][0]:09d}.jpg"
        assert photo.content == stored.read_bytes()


def test_without_a_box_the_crop_policy_chooses_and_shop_the_look_takes_every_garment(served, monkeypatch):
    client, app, _, pcfg = served
    data, _, _, _ = street_query(pcfg)
    models = app.state.engine.models
    found = [Detection((10, 20, 90, 160), "top", 0.9, 0.95), Detection((5, 5, 60, 60), "bag", 0.8, 0.7),
             Detection((0, 0, 50, 50), "footwear", 0.99, 0.4)]  # objectness 0.4: below the paper's 0.5
    monkeypatch.setattr(models, "detect", lambda photos: [list(found) for _ in photos])
    look = search_photo(client, data, k=3).json()["garments"]
    expected = [(c, "top") for c in models.categories_of("top")] + [(c, "bag") for c in models.categories_of("bag")]
    assert [(g["category"], g["label"]) for g in look] == expected
    assert all(g["rule"] == "detection" and len(g["results"]) == 3 for g in look)
    one = search_photo(client, data, category="bags", k=3).json()["garments"]
    assert [(g["rule"], g["box_xyxy"]) for g in one] == [("detection", [5.0, 5.0, 60.0, 60.0])]
    footwear = search_photo(client, data, category="footwear", k=3).json()["garments"]
    assert footwear[0]["rule"] == "fallback"  # its only detection fails the objectness test: whole photo


def _png(w, h) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (200, 10, 10)).save(buf, format="PNG")
    return buf.getvalue()


def _bomb() -> bytes:
    """A small PNG (a few kB) that decodes to 6,000 x 6,000 pixels, over the test server's 4 megapixels."""
    buf = io.BytesIO()
    Image.new("1", (6_000, 6_000)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


BAD_REQUESTS = {
    "empty body": (dict(content=b""), 422, "photo"),
    "no photo field": (dict(data={"category": "bags"}), 422, "photo"),
    "zero-byte file": (dict(files={"photo": ("x.jpg", b"", "image/jpeg")}), 400, "the file is empty"),
    "html named .jpg": (dict(files={"photo": ("x.jpg", b"<html><body>404</body></html>", "image/jpeg")}), 400,
                        "not an image"),
    "1x1 image": (dict(files={"photo": ("x.png", _png(1, 1), "image/png")}), 400, "too small"),
    "decompression bomb": (dict(files={"photo": ("bomb.png", _bomb(), "image/png")}), 413, "too many pixels"),
    "over the size limit": (dict(files={"photo": ("big.jpg", b"\xff" * (3 * 2**20), "image/jpeg")}), 413, "limit"),
    "unknown category": (dict(data={"category": "spaceships"}), 400, "category: 'spaceships' is not a category"),
    "box outside": (dict(data={"category": "bags", "box": "5000,5000,6000,6000"}), 400, "lies outside the photo"),
    "empty box": (dict(data={"category": "bags", "box": "10,10,10,50"}), 400, "is empty"),
    "box of text": (dict(data={"category": "bags", "box": "a,b,c,d"}), 400, "not four numbers"),
    "box without category": (dict(data={"box": "1,1,20,20"}), 400, "give the category"),
    "k = 0": (dict(data={"k": "0"}), 400, "k: 0 is not between 1 and 100"),
    "k = 10**9": (dict(data={"k": str(10**9)}), 400, "not between 1 and 100"),
    "k of text": (dict(data={"k": "many"}), 422, "k"),
}


@pytest.mark.parametrize("name", list(BAD_REQUESTS))
def test_bad_input_is_a_4xx_json_error_and_the_server_goes_on(served, name):
    client, _, _, pcfg = served
    kwargs, status, message = BAD_REQUESTS[name]
    kwargs = dict(kwargs)
    if "files" not in kwargs and "content" not in kwargs and name != "no photo field":
        kwargs["files"] = {"photo": ("street.jpg", street_query(pcfg)[0], "image/jpeg")}
    response = client.post("/api/search", **kwargs)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    data, category, box, _ = street_query(pcfg)
    assert search_photo(client, data, category=category, box=",".join(map(str, box))).status_code == 200


def test_truncated_jpeg_is_refused(served):
    client, _, _, pcfg = served
    data = street_query(pcfg)[0]
    response = client.post("/api/search", files={"photo": ("cut.jpg", data[:len(data) // 3], "image/jpeg")})
    assert response.status_code == 400 and "truncated" in response.json()["error"]


def test_photos_by_id_only(served):
    client, _, _, _ = served
    assert client.get("/api/photos/999999").json() == {"error": "photo_id: 999999 is not in the catalogue"}
    assert client.get("/api/photos/999999").status_code == 404
    for path in ("/api/photos/..%2Fcatalogue.sqlite", "/api/photos/..", "/static/", "/static/../catalogue.sqlite",
                 "/static/..%2F..%2Fcatalogue.sqlite"):
        response = client.get(path)  # never a file outside the page's assets, never a directory listing
        assert response.status_code in (404, 422), path
        assert "error" in response.json()


def test_health_docs_metrics_and_summary(served):
    client, _, cat, _ = served
    assert client.get("/healthz").json()["status"] == "ok"
    assert "/api/search" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200
    summary = client.get("/api/catalogue").json()
    assert summary["photos"] > 0 and summary["model"]["run"] == "tri-crops"
    client.post("/api/search", files={"photo": ("x.jpg", b"", "image/jpeg")})
    metrics = client.get("/metrics").text
    assert 'detret_requests_total{method="POST",route="/api/search",status="400"}' in metrics
    assert 'detret_request_errors_total{route="/api/search",status="400"}' in metrics
    assert 'detret_request_latency_seconds_bucket{le="0.5",route="/api/search"}' in metrics


def test_changes_need_the_token(served):
    client, _, _, pcfg = served
    files = products_upload(pcfg, "T1", "bags", 1)
    assert client.post("/api/catalogue", files=files).status_code == 401
    assert client.post("/api/catalogue", files=files, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.delete("/api/catalogue/products/T1", headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401


def test_changes_are_disabled_without_a_token(demo_catalogue, tmp_path):
    root, pcfg = demo_catalogue
    with TestClient(create_app(copy_catalogue(root, tmp_path / "cat"))) as client:
        response = client.post("/api/catalogue", files=products_upload(pcfg, "T1", "bags", 1),
                               headers={"Authorization": "Bearer anything"})
        assert response.status_code == 403 and "DETRET_SERVE_TOKEN" in response.json()["error"]


def test_a_line_may_only_name_an_uploaded_photo(served):
    client, _, cat, _ = served
    csv = f"photo,product,category\n{cat / 'catalogue.sqlite'},X,bags\n".encode()
    response = client.post("/api/catalogue", files={"products": ("p.csv", csv, "text/csv")},
                           headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 400 and "uploaded photos" in response.json()["error"]


def test_added_products_are_found_without_a_restart_and_removed_ones_are_gone(served):
    """Searches run throughout the add and the removal: none fails, and none shows a photo the
    catalogue does not hold at the end of that search."""
    client, _, cat, pcfg = served
    data, category, box, _ = street_query(pcfg)
    _, rows = read_descriptors(Path(pcfg.run_dir) / "embed-tri-crops", "gallery")
    same_category = next(r for r in rows if r.category == category)
    stop, failures, seen = threading.Event(), [], []

    def searching():
        while not stop.is_set():
            response = search_photo(client, data, category=category, box=",".join(map(str, box)), k=100)
            if response.status_code != 200:
                failures.append(response.text)
                continue
            ids = [r["photo_id"] for r in response.json()["garments"][0]["results"]]
            seen.append(ids)
            if any(client.get(f"/api/photos/{i}").status_code != 200 for i in ids[:3]):
                failures.append(f"a result photo is not served: {ids[:3]}")

    worker = threading.Thread(target=searching)
    worker.start()
    try:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        added = client.post("/api/catalogue", files=products_upload(pcfg, "LIVE-1", category, same_category.photo_id),
                            headers=auth)
        assert added.status_code == 200 and added.json()["added"] == 1, added.text
        found = search_photo(client, data, category=category, box=",".join(map(str, box)), k=100).json()
        assert "LIVE-1" in [r["product"] for r in found["garments"][0]["results"]]
        removed = client.delete("/api/catalogue/products/LIVE-1", headers=auth)
        assert removed.status_code == 200 and removed.json()["removed_photos"] == 1
        after = search_photo(client, data, category=category, box=",".join(map(str, box)), k=100).json()
        assert "LIVE-1" not in [r["product"] for r in after["garments"][0]["results"]]
        assert client.delete("/api/catalogue/products/LIVE-1", headers=auth).status_code == 404
    finally:
        stop.set()
        worker.join()
    assert not failures and seen


def test_a_reindexed_catalogue_is_searched_with_its_new_model_without_a_restart(demo_catalogue, tmp_path):
    from detret.catalogue.create import reindex_catalogue

    root, pcfg = demo_catalogue
    cat = copy_catalogue(root, tmp_path / "cat")
    data, category, box, i = street_query(pcfg)
    with TestClient(create_app(cat, token=TOKEN)) as client:
        before = client.get("/healthz").json()["model"]
        assert search_photo(client, data, category=category, box=",".join(map(str, box)), k=5).status_code == 200
        new = reindex_catalogue(pcfg, cat, "tri-full")["identity"]
        assert client.get("/healthz").json()["model"] == new != before
        response = search_photo(client, data, category=category, box=",".join(map(str, box)), k=5)
        assert response.status_code == 200
        rankings = [json.loads(line) for line in
                    (Path(pcfg.run_dir) / "search-tri-full" / "rankings.jsonl").read_text().splitlines()]
        got = response.json()["garments"][0]["results"]
        assert np.allclose([r["score"] for r in got], [s for _, _, s in rankings[i]["results"][:5]], atol=1e-4)
        assert client.get("/api/catalogue").json()["model"]["run"] == "tri-full"
        added = client.post("/api/catalogue", files=products_upload(pcfg, "AFTER-REINDEX", "bags", 1),
                            headers={"Authorization": f"Bearer {TOKEN}"})
        assert added.status_code == 200 and added.json()["added"] == 1
