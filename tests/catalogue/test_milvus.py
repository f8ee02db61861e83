"""A whole catalogue on Milvus (Lite embedded, and Lite's server on 127.0.0.1) against the same catalogue on FAISS
files: the same vectors, the same answers of the service (one category, shop the look), products added while
serving found at once and removed ones never returned, `check` and `repair`, and clear errors for bad settings."""
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from detret.catalogue.check import check_catalogue, repair_catalogue
from detret.catalogue.create import create_catalogue
from detret.catalogue.milvus import VectorsSpec
from detret.catalogue.store import Catalogue
from detret.embed.artifact import read_descriptors
from detret.errors import InputError
from detret.serve.app import create_app
from tests.helpers import copy_catalogue
from tests.serve.helpers import TOKEN, products_upload, search_photo, street_query


@pytest.fixture(scope="module", params=["milvus-lite", "milvus-server"])
def milvus_catalogue(request, demo_catalogue, tmp_path_factory):
    """(backend, catalogue folder, FAISS demo catalogue, pipeline config): the demo run's gallery imported."""
    faiss_root, pcfg = demo_catalogue
    vectors = "milvus:vectors.db" if request.param == "milvus-lite" else \
        "milvus:" + request.getfixturevalue("milvus_server")
    root = tmp_path_factory.mktemp(request.param) / "cat"
    create_catalogue(pcfg, root, "tri-crops", import_gallery=True, vectors=vectors)
    return request.param, root, faiss_root, pcfg


def _all_vectors(root):
    cat = Catalogue.open(root)
    try:
        reader = cat.reader(searchable=False)
        return {(c, int(i)): reader.vector(c, int(i)) for c in reader.categories() for i in reader.live_ids(c)}
    finally:
        cat.close()


def test_the_imported_gallery_holds_the_faiss_catalogues_vectors_and_answers(milvus_catalogue):
    _, root, faiss_root, pcfg = milvus_catalogue
    on_milvus, on_faiss = _all_vectors(root), _all_vectors(faiss_root)
    assert on_milvus.keys() == on_faiss.keys() and len(on_milvus) > 50
    assert all(np.array_equal(on_milvus[k], on_faiss[k]) for k in on_faiss)   # float32 stored as given
    queries, rows = read_descriptors(Path(pcfg.run_dir) / "embed-tri-crops", "queries")
    a, b = Catalogue.open(root), Catalogue.open(faiss_root)
    try:
        ra, rb = a.reader(), b.reader()
        for q, r in zip(queries[:12], rows[:12]):
            sa, ia = ra.search(r.category, q[None], 10)
            sb, ib = rb.search(r.category, q[None], 10)
            assert np.allclose(sa, sb, atol=1e-5)
            assert (ia == ib).all() or np.allclose(sa[ia != ib], sb[ia != ib], atol=1e-5)   # swaps only in ties
        assert a.summary()["index"]["vectors"].startswith("milvus:")
    finally:
        a.close()
        b.close()


def _products(response):
    return [[r["product"] for r in g["results"]] for g in response.json()["garments"]]


def test_the_service_answers_as_on_faiss_files_and_follows_changes_while_serving(milvus_catalogue, tmp_path):
    """Searches run throughout an add and a removal over HTTP: none fails, the added product is found at once,
    the removed one is never returned; one-category searches and shop the look answer as on FAISS files."""
    backend, root, faiss_root, pcfg = milvus_catalogue
    data, category, box, _ = street_query(pcfg)
    box_text = ",".join(map(str, box))
    with TestClient(create_app(faiss_root)) as on_faiss:
        expected = [_products(search_photo(on_faiss, data, category=category, box=box_text, k=10)),
                    _products(search_photo(on_faiss, data, k=5))]
    cat = copy_catalogue(root, tmp_path / "cat") if backend == "milvus-lite" else root
    with TestClient(create_app(cat, token=TOKEN)) as client:
        assert [_products(search_photo(client, data, category=category, box=box_text, k=10)),
                _products(search_photo(client, data, k=5))] == expected
        stop, failures = threading.Event(), []

        def searching():
            while not stop.is_set():
                response = search_photo(client, data, category=category, box=box_text, k=100)
                if response.status_code != 200:
                    failures.append(response.text)

        worker = threading.Thread(target=searching)
        worker.start()
        try:
            auth = {"Authorization": f"Bearer {TOKEN}"}
            added = client.post("/api/catalogue", files=products_upload(pcfg, "LIVE-M", category, 1), headers=auth)
            assert added.status_code == 200 and added.json()["added"] == 1, added.text
            found = search_photo(client, data, category=category, box=box_text, k=100).json()
            assert "LIVE-M" in _products_of(found)
            removed = client.delete("/api/catalogue/products/LIVE-M", headers=auth)
            assert removed.status_code == 200 and removed.json()["removed_photos"] == 1
            after = search_photo(client, data, category=category, box=box_text, k=100).json()
            assert "LIVE-M" not in _products_of(after)
        finally:
            stop.set()
            worker.join()
        assert not failures, failures[:3]
    assert check_catalogue(cat)["ok"]


def _products_of(answer):
    return {r["product"] for g in answer["garments"] for r in g["results"]}


@pytest.mark.slow
def test_a_cli_add_in_another_process_is_found_by_a_running_server(milvus_catalogue, tmp_path):
    """Milvus Lite's server: `detret catalogue add` in its own process while the service runs (as on a
    cluster); with Milvus Lite embedded the second process is refused with what to do."""
    backend, root, _, pcfg = milvus_catalogue
    data, category, box, _ = street_query(pcfg)
    shop = Path(pcfg.data.street2shop.root) / "images" / f"{1:09d}.jpg"
    csv = tmp_path / "p.csv"
    csv.write_text(f"photo,product,category\n{shop},CLI-{backend},{category}\n")
    cat = copy_catalogue(root, tmp_path / "cat") if backend == "milvus-lite" else root
    with TestClient(create_app(cat)) as client:
        proc = subprocess.run([sys.executable, "-m", "detret", "catalogue", "add", str(cat), str(csv)],
                              capture_output=True, text=True, timeout=600, env={**os.environ})
        if backend == "milvus-lite":
            assert proc.returncode != 0 and "one process" in proc.stderr and "milvus-lite server" in proc.stderr
            return
        assert proc.returncode == 0, proc.stderr[-2000:]
        found = search_photo(client, data, category=category, box=",".join(map(str, box)), k=100).json()
        assert f"CLI-{backend}" in _products_of(found)


def test_check_finds_missing_vectors_and_repair_computes_them_again(vectors_backend, demo_catalogue, tmp_path):
    """On a private copy of the FAISS demo catalogue moved to the backend (a collection of its own)."""
    from detret.catalogue.move import move_vectors

    _, vectors = vectors_backend
    cat_root = copy_catalogue(demo_catalogue[0], tmp_path / "cat")
    if vectors != "faiss":
        move_vectors(cat_root, vectors)
    before = _all_vectors(cat_root)
    victims = sorted(before)[:3]
    cat = Catalogue.open(cat_root)
    try:
        if cat.milvus is not None:
            cat.milvus.delete([i for _, i in victims])
        else:   # a lost segment file: all its photos' vectors are missing
            victims = sorted(k for k in before if k[0] == victims[0][0])
            for f in cat.layout.segment_dir(victims[0][0]).glob("*.vectors.npy"):
                f.unlink()
    finally:
        cat.close()
    report = check_catalogue(cat_root)
    assert not report["ok"]
    assert sorted((c, i) for c, p in report["vectors"].items() for i in p["missing_vectors"]) == victims
    done = repair_catalogue(cat_root)
    assert sorted(done["reembedded"]) == sorted(i for _, i in victims)
    assert check_catalogue(cat_root)["ok"]
    after = _all_vectors(cat_root)
    assert all(np.allclose(after[k], before[k], atol=1e-4) for k in victims)   # the same crops, embedded again


@pytest.mark.parametrize("spec, problem", [
    ("milvus:", "expected faiss"), ("milvus:/data/store", "must end in .db"), ("pinecone:x", "expected faiss")])
def test_a_bad_vectors_setting_is_refused_with_the_forms_it_takes(spec, problem):
    with pytest.raises(InputError, match=problem):
        VectorsSpec.parse(spec)


def test_a_password_in_the_uri_is_refused_and_never_echoed():
    with pytest.raises(InputError, match="DETRET_MILVUS_TOKEN") as refused:
        VectorsSpec.parse("milvus:https://reader:s3cret@milvus.example:19530")
    assert "s3cret" not in str(refused.value)


def test_bad_settings_are_refused_before_anything_is_written(demo_catalogue, tmp_path):
    _, pcfg = demo_catalogue
    with pytest.raises(InputError, match="FAISS factory strings are for --vectors faiss"):
        create_catalogue(pcfg, tmp_path / "a", "tri-crops", index_factory="IVF1024,SQ8", vectors="milvus:v.db")
    assert not (tmp_path / "a").exists() and not list(tmp_path.glob(".a.*"))


def test_a_category_cannot_change_a_milvus_filter(milvus_catalogue):
    _, root, _, _ = milvus_catalogue
    cat = Catalogue.open(root)
    try:
        with pytest.raises(ValueError, match="cannot name a file"):
            cat.milvus.search('bags" or category != "x', np.zeros((1, cat.card.dim), np.float32), 5)
    finally:
        cat.close()


def test_rows_of_a_change_in_flight_never_crowd_out_the_answer(milvus_catalogue, tmp_path):
    """Rows in Milvus whose photos the database does not show (an add not committed yet) that score above every
    real photo: the service still answers k photos, the same as without them (it searches deeper)."""
    from detret.serve.engine import Job, SearchEngine
    from detret.data.images import read_rgb

    backend, root, _, pcfg = milvus_catalogue
    cat = copy_catalogue(root, tmp_path / "cat") if backend == "milvus-lite" else root
    _, category, box, i = street_query(pcfg)
    _, rows = read_descriptors(Path(pcfg.run_dir) / "embed-tri-crops", "queries")
    photo = read_rgb(Path(pcfg.data.street2shop.root) / "images" / f"{rows[i].photo_id:09d}.jpg")
    engine = SearchEngine(cat)
    try:
        def answer():
            return [r["photo_id"] for r in engine.run([Job(photo, category, tuple(box), 10)])[0]["garments"][0]
                    ["results"]]

        before = answer()
        query = engine.models.describe([photo], [tuple(box)], "query")
        ghosts = np.arange(10**9, 10**9 + 40, dtype=np.int64)
        engine.catalogue.milvus.upsert(category, ghosts, np.repeat(query, len(ghosts), axis=0), 0)
        engine.catalogue.milvus.client.flush(engine.catalogue.milvus.collection)
        assert set(engine.vectors.search(category, query, 20)[1][0].tolist()) <= set(ghosts.tolist())
        assert answer() == before and len(before) == 10
        engine.catalogue.milvus.delete(ghosts)
    finally:
        engine.catalogue.close()


@pytest.mark.slow
def test_a_milvus_that_stops_answering_gets_503_and_a_clear_error(demo_catalogue, tmp_path):
    """Its own Milvus Lite server, stopped while the service runs: searches are answered 503 (retry) without the
    server's address; a writer gets an error naming the store; nothing committed is lost."""
    from detret.catalogue.move import move_vectors
    from detret.catalogue.remove import remove_products
    from detret.errors import VectorStoreError
    from tests.helpers import start_milvus_server

    proc, uri = start_milvus_server(tmp_path / "milvus")
    root, pcfg = demo_catalogue
    cat = copy_catalogue(root, tmp_path / "cat")
    move_vectors(cat, "milvus:" + uri)
    data, category, box, _ = street_query(pcfg)
    try:
        with TestClient(create_app(cat)) as client:
            assert search_photo(client, data, category=category, box=",".join(map(str, box)), k=5).status_code == 200
            proc.kill()
            proc.wait()
            response = search_photo(client, data, category=category, box=",".join(map(str, box)), k=5)
            assert response.status_code == 503 and response.headers["Retry-After"] == "1"
            assert uri.split("//")[1] not in response.text
        product = Catalogue.open(cat).conn.execute("SELECT product FROM photos LIMIT 1").fetchone()[0]
        with pytest.raises(VectorStoreError, match=uri.split("//")[1]):
            remove_products(cat, product=product)
    finally:
        proc.kill()
