"""`catalogue reindex --vectors`: a catalogue's vectors moved between FAISS files, Milvus Lite and a Milvus server
with nothing recomputed (every vector bit for bit the same), a server following the move without a restart, and
a move that fails leaving the catalogue as it was."""
import numpy as np
import pytest
from fastapi.testclient import TestClient

from detret.catalogue import db
from detret.catalogue.check import check_catalogue
from detret.catalogue.move import move_vectors
from detret.catalogue.store import Catalogue
from detret.errors import InputError
from detret.serve.app import create_app
from tests.helpers import copy_catalogue
from tests.serve.helpers import search_photo, street_query


def _vectors_and_rows(root):
    cat = Catalogue.open(root)
    try:
        reader = cat.reader(searchable=False)
        vectors = {(c, int(i)): reader.vector(c, int(i)) for c in reader.categories() for i in reader.live_ids(c)}
        rows = [dict(r) for r in cat.conn.execute("SELECT * FROM photos ORDER BY photo_id")]
        return vectors, rows, str(cat.vectors_spec)
    finally:
        cat.close()


def test_vectors_move_round_trip_without_recomputing(demo_catalogue, milvus_server, tmp_path):
    root = copy_catalogue(demo_catalogue[0], tmp_path / "cat")
    original, rows, _ = _vectors_and_rows(root)
    for target in ("milvus:vectors.db", "milvus:" + milvus_server, "faiss"):
        report = move_vectors(root, target)
        assert report["recomputed"] == 0 and sum(report["moved"].values()) == len(original)
        vectors, moved_rows, spec = _vectors_and_rows(root)
        assert spec == target and moved_rows == rows
        assert vectors.keys() == original.keys()
        assert all(np.array_equal(vectors[k], original[k]) for k in original), target
        assert check_catalogue(root)["ok"], target
    assert not (root / "vectors.db").exists()   # the Lite folder went away with the copy it belonged to


def test_a_server_follows_a_move_without_a_restart(demo_catalogue, tmp_path):
    root, pcfg = demo_catalogue
    cat = copy_catalogue(root, tmp_path / "cat")
    data, category, box, _ = street_query(pcfg)
    with TestClient(create_app(cat)) as client:
        before = search_photo(client, data, category=category, box=",".join(map(str, box)), k=10).json()
        move_vectors(cat, "milvus:vectors.db")
        after = search_photo(client, data, category=category, box=",".join(map(str, box)), k=10).json()
        assert client.get("/api/catalogue").json()["index"]["vectors"] == "milvus:vectors.db"
    got = [(r["photo_id"], r["score"]) for r in after["garments"][0]["results"]]
    expected = [(r["photo_id"], r["score"]) for r in before["garments"][0]["results"]]
    assert [i for i, _ in got] == [i for i, _ in expected]
    assert np.allclose([s for _, s in got], [s for _, s in expected], atol=1e-5)


def test_a_move_that_cannot_be_done_leaves_the_catalogue_as_it_was(demo_catalogue, tmp_path):
    root = copy_catalogue(demo_catalogue[0], tmp_path / "cat")
    original, rows, _ = _vectors_and_rows(root)
    cat = Catalogue.open(root)
    try:
        lost = db.segments(cat.conn)[0]
        (cat.layout.segment_dir(lost["category"]) / f"{lost['name']}.vectors.npy").unlink()
    finally:
        cat.close()
    with pytest.raises(InputError, match="catalogue repair"):
        move_vectors(root, "milvus:vectors.db")
    _, rows_after, spec = _vectors_and_rows(root)
    assert spec == "faiss" and rows_after == rows
    assert not list(tmp_path.glob(".cat.*")) and not (root / "vectors.db").exists()
    with pytest.raises(InputError, match="FAISS factory strings"):
        move_vectors(root, "milvus:vectors.db", index_factory="IVF64,SQ8")


@pytest.mark.slow
def test_reindex_with_another_run_keeps_the_store_and_drops_the_old_collection(demo_catalogue, milvus_server,
                                                                               tmp_path):
    """`catalogue reindex --run` of a catalogue on a Milvus server: a new collection with the new model's vectors,
    the old one dropped from the server (no catalogue refers to it), `check` content."""
    from pymilvus import MilvusClient

    from detret.catalogue.create import reindex_catalogue

    root, pcfg = demo_catalogue
    cat = copy_catalogue(root, tmp_path / "cat")
    move_vectors(cat, "milvus:" + milvus_server)
    before = Catalogue.open(cat)
    old_collection = before.milvus.collection
    before.close()
    reindex_catalogue(pcfg, cat, "tri-full")
    after = Catalogue.open(cat)
    try:
        assert str(after.vectors_spec) == "milvus:" + milvus_server and after.card.run == "tri-full"
        assert after.milvus.collection != old_collection
    finally:
        after.close()
    client = MilvusClient(uri=milvus_server)
    try:
        assert not client.has_collection(old_collection)
    finally:
        client.close()
    assert check_catalogue(cat)["ok"]
