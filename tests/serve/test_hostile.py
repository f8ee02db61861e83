"""The service against a hostile client (issue 26's findings, each reproduced against the real app): one bad
photo fails only its own request, formats outside the photo list are refused, labels and ids are bounded,
headers protect the page, deadlines answer 503, a full disk answers 507 and blocks nothing."""
import asyncio
import errno
import io
import json
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detret.detect.crops import Detection
from detret.serve.batcher import Batcher
from detret.serve.engine import Job
from detret.serve.uploads import Limits
from tests.serve.helpers import TOKEN, products_upload, search_photo, serving_copy, street_query

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def hostile(demo_catalogue, tmp_path_factory):
    with serving_copy(demo_catalogue, tmp_path_factory.mktemp("hostile"),
                      Limits(max_upload_bytes=2 * 2**20, decode_slots=2)) as served:
        yield served


def _png(size, mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, format="PNG")
    return buf.getvalue()


def _saved(fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(buf, format=fmt, **kw)
    return buf.getvalue()


def _ok(client, pcfg) -> None:
    data, category, box, _ = street_query(pcfg)
    assert search_photo(client, data, category=category, box=",".join(map(str, box))).status_code == 200


def test_a_thin_photo_is_refused_with_its_problem(hostile):
    client, _, _, pcfg = hostile
    thin = _png((22000, 8))
    assert len(thin) < 1000   # the finding's 622-byte PNG
    for fields in ({"category": "bags"}, {}):
        response = client.post("/api/search", files={"photo": ("thin.png", thin, "image/png")}, data=fields)
        assert response.status_code == 400 and "too elongated (22000x8 px" in response.json()["error"]
    _ok(client, pcfg)


def test_a_job_the_models_fail_on_fails_alone(hostile):
    """The finding itself, at the batcher: a photo the detector cannot resize (22000 x 8, past the decoder's check)
    batched with three good searches. The three get the answers they get alone; the bad one gets its error."""
    _, app, _, pcfg = hostile
    engine = app.state.engine
    data, category, box, _ = street_query(pcfg)
    good = np.array(Image.open(io.BytesIO(data)).convert("RGB"))
    alone = engine.run([Job(good, category, None, 5)])[0]["garments"]
    hold, batches = threading.Event(), []

    def run_batch(jobs):
        if jobs == ["first"]:
            hold.wait(30)
            return ["first done"]
        batches.append(len(jobs))
        return engine.run(jobs)

    batcher = Batcher(run_batch, max_batch=8, max_queue=8)

    async def scenario():
        first = asyncio.ensure_future(batcher.submit("first"))
        while batcher.health()["batch_running_s"] is None:   # the worker holds "first"
            await asyncio.sleep(0.001)
        jobs = [Job(good, category, None, 5), Job(np.zeros((8, 22000, 3), np.uint8), category, None, 5),
                Job(good, category, None, 5), Job(good, category, None, 5)]
        pending = [asyncio.ensure_future(batcher.submit(j)) for j in jobs]
        while batcher.waiting() < len(jobs):
            await asyncio.sleep(0.001)
        hold.set()
        await first
        return await asyncio.gather(*pending, return_exceptions=True)

    try:
        outcomes = asyncio.run(scenario())
    finally:
        hold.set()
        batcher.close()
    assert batches[0] == 4   # the four were batched together, then run one by one
    assert isinstance(outcomes[1], Exception)
    for i in (0, 2, 3):
        assert [r["product"] for r in outcomes[i]["garments"][0]["results"]] == \
               [r["product"] for r in alone[0]["results"]]


@pytest.mark.parametrize("name, data", [
    ("photo.jpg", _saved("EPS")),                       # would reach Ghostscript where it is installed
    ("photo.dds", _saved("DDS")),                       # a well-formed DDS is not a photo
    ("photo.psd", b"8BPS\x00\x01" + b"\x00" * 40),
    ("photo.ico", _saved("ICO")),
])
def test_formats_outside_the_photo_list_are_refused(hostile, name, data):
    client, _, _, pcfg = hostile
    response = client.post("/api/search", files={"photo": (name, data, "application/octet-stream")},
                           data={"category": "bags"})
    assert response.status_code == 400 and "not an image detret reads" in response.json()["error"], response.text
    _ok(client, pcfg)


def test_malformed_dds_found_by_fuzzing_is_a_400(hostile):
    """The fuzzed DDS raised NotImplementedError in Pillow's plugin (a 500): a DDS is never parsed now."""
    client, _, _, _ = hostile
    dds = bytearray(_saved("DDS"))
    dds[80:84] = b"\x00\x00\x00\x00"   # pixel format flags: none Pillow knows
    response = client.post("/api/search", files={"photo": ("x.jpg", bytes(dds), "image/jpeg")},
                           data={"category": "bags"})
    assert response.status_code == 400


@pytest.mark.parametrize("photo_id", [2**63, 2**64 + 5, -1])
def test_photo_ids_outside_sqlite_are_a_422(hostile, photo_id):
    client, _, _, _ = hostile
    response = client.get(f"/api/photos/{photo_id}")
    assert response.status_code == 422 and "photo_id" in response.json()["error"]


def test_invented_methods_make_no_metric_series(hostile):
    client, _, _, _ = hostile
    for i in range(40):
        assert client.request(f"INVENTED{i}", "/").status_code in (404, 405)
    text = client.get("/metrics").text
    assert "INVENTED" not in text and 'method="other"' in text
    methods = {line.split('method="')[1].split('"')[0] for line in text.splitlines()
               if line.startswith("detret_requests_total{")}
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}


def test_every_answer_has_the_security_headers_and_docs_use_no_cdn(hostile):
    client, _, _, _ = hostile
    for response in (client.get("/"), client.get("/api/catalogue"), client.get("/api/photos/999999999"),
                     client.post("/api/search"), client.get("/docs")):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "default-src 'self'" in response.headers["content-security-policy"]
        assert "unsafe-inline" not in response.headers["content-security-policy"]
    docs = client.get("/docs")
    assert docs.status_code == 200 and "http://" not in docs.text and "https://" not in docs.text
    assert "'sha256-" in docs.headers["content-security-policy"]
    for asset in ("/static-docs/swagger-ui-bundle.js", "/static-docs/swagger-ui.css"):
        assert client.get(asset).status_code == 200
    assert client.get("/openapi.json").json()["paths"]["/api/search"]


def test_the_api_never_shows_the_servers_paths(hostile):
    client, _, cat, _ = hostile
    summary = client.get("/api/catalogue")
    assert summary.json()["catalogue"] == cat.name and str(cat.parent) not in summary.text


def test_product_links_must_be_http_urls(hostile):
    client, _, _, pcfg = hostile
    shop = (Path(pcfg.data.street2shop.root) / "images" / f"{1:09d}.jpg").read_bytes()
    for url in ("javascript:alert(document.cookie)", "data:text/html,<script>x</script>", "//evil.example/x",
                "JaVaScRiPt:x"):
        csv = f"photo,product,category,url\nnew.jpg,XSS,bags,{url}\n".encode()
        response = client.post("/api/catalogue", headers=AUTH, files={"products": ("p.csv", csv, "text/csv"),
                                                                      "photos": ("new.jpg", shop, "image/jpeg")})
        assert response.status_code == 400 and "products.csv:2: url" in response.json()["error"], response.text


def test_a_product_list_that_is_not_utf8_is_a_400_naming_its_line(hostile):
    client, _, _, pcfg = hostile
    shop = (Path(pcfg.data.street2shop.root) / "images" / f"{1:09d}.jpg").read_bytes()
    csv = "photo,product,category,title\nnew.jpg,P1,bags,Caf\u00e9\n".encode("latin-1")
    response = client.post("/api/catalogue", headers=AUTH, files={"products": ("p.csv", csv, "text/csv"),
                                                                  "photos": ("new.jpg", shop, "image/jpeg")})
    assert response.status_code == 400 and "products.csv:2: not UTF-8" in response.json()["error"], response.text


def test_a_chunked_body_over_the_limit_is_a_413(hostile):
    client, _, _, _ = hostile

    def chunks():
        for _ in range(40):
            yield b"x" * 2**17   # 5 MiB in all, over the 2 MiB limit, no Content-Length
    response = client.post("/api/search", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"})
    assert response.status_code == 413, response.text


def test_a_product_id_with_a_slash_is_removed_over_http(hostile):
    client, _, _, pcfg = hostile
    added = client.post("/api/catalogue", files=products_upload(pcfg, "shirts/blue-42", "bags", 1), headers=AUTH)
    assert added.status_code == 200 and added.json()["added"] == 1, added.text
    removed = client.delete("/api/catalogue/products/shirts%2Fblue-42", headers=AUTH)
    assert removed.status_code == 200 and removed.json()["removed_photos"] == 1, removed.text


def test_shop_the_look_searches_at_most_max_garments(hostile, monkeypatch):
    client, app, _, pcfg = hostile
    models = app.state.engine.models
    data, _, _, _ = street_query(pcfg)
    found = [Detection((i, i, 60 + i, 80 + i), "bag", 0.3 + i / 100, 0.9) for i in range(30)]
    monkeypatch.setattr(models, "detect", lambda photos: [list(found) for _ in photos])
    garments = search_photo(client, data, k=1).json()["garments"]
    boxes = {tuple(g["box_xyxy"]) for g in garments}
    cap = app.state.engine.max_garments
    assert len(boxes) == cap == Limits().max_garments
    assert boxes == {(float(i), float(i), 60.0 + i, 80.0 + i) for i in range(30 - cap, 30)}  # the best scores


def test_a_search_past_its_deadline_is_a_503_and_a_stuck_worker_is_unhealthy(hostile, monkeypatch):
    client, app, _, pcfg = hostile
    batcher = app.state.batcher
    release = threading.Event()
    real = batcher.run_batch
    monkeypatch.setattr(batcher, "timeout_s", 0.5)
    monkeypatch.setattr(batcher, "run_batch", lambda jobs: (release.wait(30), real(jobs))[1])
    data, category, box, _ = street_query(pcfg)
    try:
        response = search_photo(client, data, category=category, box=",".join(map(str, box)))
        assert response.status_code == 503 and "did not answer within 0.5 s" in response.json()["error"]
        assert response.headers["retry-after"] == "1"
        health = client.get("/healthz")
        assert health.status_code == 503 and health.json()["worker"]["batch_running_s"] > 0.5
    finally:
        release.set()
    monkeypatch.undo()
    while batcher.health()["batch_running_s"] is not None:
        threading.Event().wait(0.01)
    assert client.get("/healthz").status_code == 200
    _ok(client, pcfg)


def test_a_full_disk_is_a_507_leaves_nothing_pending_and_removals_go_through(hostile, monkeypatch):
    import detret.catalogue.changes as changes

    client, _, cat, pcfg = hostile
    added = client.post("/api/catalogue", files=products_upload(pcfg, "KEEP-1", "bags", 2), headers=AUTH)
    assert added.status_code == 200
    before = sorted(p for p in (cat / "photos").rglob("*") if p.is_file())

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(changes, "write_segment", full)
    response = client.post("/api/catalogue", files=products_upload(pcfg, "FULL-1", "bags", 3), headers=AUTH)
    assert response.status_code == 507 and "disk is full" in response.json()["error"], response.text
    monkeypatch.undo()
    import sqlite3
    with sqlite3.connect(cat / "catalogue.sqlite") as conn:
        assert conn.execute("SELECT COUNT(*) FROM changes WHERE state != 'done'").fetchone()[0] == 0
        assert conn.execute("SELECT COUNT(*) FROM photos WHERE product = 'FULL-1'").fetchone()[0] == 0
    assert sorted(p for p in (cat / "photos").rglob("*") if p.is_file()) == before   # its stored photo deleted
    # before, the add's pending change blocked every writer, this removal included
    assert client.delete("/api/catalogue/products/KEEP-1", headers=AUTH).status_code == 200
    assert json.loads(client.get("/api/catalogue").text)["unfinished_changes"] == 0


def test_a_stored_photo_lost_in_a_power_cut_is_a_404_not_a_500(hostile):
    client, _, cat, _ = hostile
    import sqlite3

    with sqlite3.connect(cat / "catalogue.sqlite") as conn:
        photo_id, file = conn.execute("SELECT photo_id, file FROM photos WHERE state = 'present' "
                                      "ORDER BY photo_id DESC LIMIT 1").fetchone()
    (cat / file).unlink()
    response = client.get(f"/api/photos/{photo_id}")
    assert response.status_code == 404 and "stored photo is missing" in response.json()["error"]


def test_an_error_never_echoes_megabytes_of_what_was_sent(hostile):
    client, _, _, pcfg = hostile
    data, _, _, _ = street_query(pcfg)
    for fields in ({"category": "x" * 2**20}, {"category": "bags", "box": "1," * 2**19}):
        response = search_photo(client, data, **fields)
        assert response.status_code == 400 and len(response.content) < 2000, response.status_code


def test_decodes_at_once_are_bounded_and_a_full_queue_refuses_before_decoding(hostile, monkeypatch):
    import time

    import detret.serve.app as app_module

    client, app, _, pcfg = hostile
    real = app_module.decode_photo
    lock, state, two = threading.Lock(), {"now": 0, "most": 0, "calls": 0}, threading.Event()

    def slow_decode(*args):
        with lock:
            state["now"] += 1
            state["calls"] += 1
            state["most"] = max(state["most"], state["now"])
            if state["now"] >= 2:
                two.set()
        two.wait(30)   # the first decode waits for a second one, however fast or busy the machine
        time.sleep(0.05)
        with lock:
            state["now"] -= 1
        return real(*args)

    monkeypatch.setattr(app_module, "decode_photo", slow_decode)
    data, category, box, _ = street_query(pcfg)
    codes = []
    threads = [threading.Thread(target=lambda: codes.append(
        search_photo(client, data, category=category, box=",".join(map(str, box))).status_code)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [200] * 6 and state["calls"] == 6
    assert state["most"] == 2   # decode_slots (default: the cores), not the thread pool's 40
    monkeypatch.setattr(app.state.batcher, "full", lambda: True)
    response = search_photo(client, data, category=category)
    assert response.status_code == 503 and state["calls"] == 6   # refused before its photo was decoded
