"""The search engine: a reindex landing while the models load is followed (the file actually opened is
recorded), and a photo reduced for the models answers in the pixels of the photo the client sent."""
import io
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from detret.catalogue.layout import CatalogueLayout
from detret.catalogue.remove import remove_products
from detret.serve.app import create_app
from detret.serve.engine import Job, SearchEngine
from tests.helpers import copy_catalogue
from tests.serve.helpers import search_photo, street_query


def test_a_reindex_during_start_up_is_followed_at_the_first_search(demo_catalogue, tmp_path, monkeypatch):
    """Before: the engine recorded the database's inode after loading the models, so a reindex landing in
    between left it on the old database with the new indexes for good."""
    import detret.serve.engine as engine_module
    from detret.catalogue.create import exchange_dirs

    root, pcfg = demo_catalogue
    cat = copy_catalogue(root, tmp_path / "cat")
    newer = copy_catalogue(root, tmp_path / "newer")   # stands for the reindexed catalogue: one product fewer
    gone = remove_products(newer, product=_first_product(newer))["removed_photos"]
    real = engine_module.BoundModels

    def loading_while_reindexed(*args, **kwargs):
        exchange_dirs(newer, cat)   # the reindex lands while the models load
        return real(*args, **kwargs)

    monkeypatch.setattr(engine_module, "BoundModels", loading_while_reindexed)
    engine = SearchEngine(cat)
    monkeypatch.undo()
    assert engine.catalogue.db_inode != CatalogueLayout(cat).db.stat().st_ino   # it opened the file now replaced
    engine.run([Job(np.full((64, 64, 3), 255, np.uint8), engine.categories[0], None, 1)])
    assert engine.catalogue.db_inode == CatalogueLayout(cat).db.stat().st_ino   # followed
    photos = engine.catalogue.conn.execute("SELECT COUNT(*) FROM photos").fetchone()[0]
    assert photos == _count(root) - gone


def _first_product(root):
    import sqlite3

    with sqlite3.connect(Path(root) / "catalogue.sqlite") as conn:
        return conn.execute("SELECT product FROM photos ORDER BY photo_id LIMIT 1").fetchone()[0]


def _count(root):
    import sqlite3

    with sqlite3.connect(Path(root) / "catalogue.sqlite") as conn:
        return conn.execute("SELECT COUNT(*) FROM photos").fetchone()[0]


def test_a_reduced_photo_answers_in_the_senders_pixels(served_small):
    """A street photo sent 3x larger than it is (reduced to 1600 px by the service): its box comes back in the
    large photo's pixels, and the results are those of the photo at its own size."""
    client, pcfg = served_small
    data, category, box, _ = street_query(pcfg)
    photo = Image.open(io.BytesIO(data))
    big = photo.resize((photo.width * 3, photo.height * 3), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    big.save(buf, format="PNG")
    big_box = [v * 3 for v in box]
    small = search_photo(client, data, category=category, box=",".join(map(str, box)), k=5).json()["garments"][0]
    large = search_photo(client, buf.getvalue(), category=category, box=",".join(map(str, big_box)),
                    k=5).json()["garments"][0]
    assert np.allclose(large["box_xyxy"], big_box, atol=0.5)
    assert large["results"][0]["product"] == small["results"][0]["product"]
    assert abs(large["results"][0]["score"] - small["results"][0]["score"]) < 0.05


def test_a_reduced_photo_without_a_box_reports_the_detection_in_the_senders_pixels(served_small, monkeypatch):
    from detret.detect.crops import Detection

    client, pcfg = served_small
    engine = client.app.state.engine
    seen = []

    def detect(photos):
        seen.extend(p.shape for p in photos)
        return [[Detection((10.0, 20.0, 110.0, 220.0), engine.models.card.category_map["bags"][0], 0.9, 0.9)]
                for _ in photos]

    monkeypatch.setattr(engine.models, "detect", detect)
    buf = io.BytesIO()
    Image.new("RGB", (4000, 3000), (120, 80, 40)).save(buf, format="JPEG")
    garment = search_photo(client, buf.getvalue(), category="bags", k=1).json()["garments"][0]
    assert seen[-1][:2] == (1200, 1600)   # what the models saw
    assert garment["rule"] == "detection" and np.allclose(garment["box_xyxy"], [25, 50, 275, 550], atol=0.5)


@pytest.fixture(scope="module")
def served_small(demo_catalogue, tmp_path_factory):
    root, pcfg = demo_catalogue
    app = create_app(copy_catalogue(root, tmp_path_factory.mktemp("engine") / "cat"))
    with TestClient(app) as client:
        yield client, pcfg
