"""The catalogue's change contract on each vector backend: FAISS segment files, Milvus Lite embedded, and
Milvus Lite's server on 127.0.0.1 (the network client a cluster would see); a real Milvus when
DETRET_MILVUS_URI is set.

The store is the catalogue's own (the database, the change protocol of ``changes.py``, the maintenance of
``compact.py``) without models (``synthetic.VectorStore``), changed in child processes killed (SIGKILL) at
every step of an add and of a removal. After each kill a reader sees the store as before or as after, never
between; a writer that opens it next finishes the change. Every search result is checked against a brute-force
search over the vectors that must be visible."""
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from detret.catalogue import db
from detret.catalogue.changes import KILL_POINT_ENV
from detret.catalogue.synthetic import VectorStore
from detret.search.exact import top_k

DIM = 32
CATEGORIES = ("dresses", "skirts")
ADD_POINTS = ["add:journal-written", "add:pending-committed", "add:segment-written", "add:applied"]
REMOVE_POINTS = ["remove:committed", "remove:vectors-deleted", "remove:files-freed"]

CHILD = """
import json, sys
import numpy as np
from detret.catalogue.changes import reconcile
from detret.catalogue.synthetic import VectorStore
root, vectors, action, arg = sys.argv[1:5]
store = VectorStore(root, {dim}, "Flat", vectors)
reconcile(store.applier)          # what a writer does first when it opens a catalogue
if action == "add":
    data = np.load(arg)
    store.add([str(c) for c in data["categories"]], data["vectors"])
elif action == "remove":
    store.remove(json.loads(arg))
store.close()
""".format(dim=DIM)


def _vectors(n, seed):
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _child(root, vectors, action, arg="", kill_at=None):
    env = {k: v for k, v in os.environ.items() if k != KILL_POINT_ENV}
    if kill_at:
        env[KILL_POINT_ENV] = kill_at
    proc = subprocess.run([sys.executable, "-c", CHILD, str(root), vectors, action, str(arg)], env=env,
                          capture_output=True, timeout=300)
    return proc.returncode, proc.stderr.decode()[-3000:]


def _seen(root, vectors, queries):
    """What a reader sees: {category: sorted present ids} and, per (category, query), the top 5 present hits
    as (photo id, score) — hits the database does not show are left out, as the service does."""
    store = VectorStore(root, DIM, "Flat", vectors)
    try:
        present = {c: sorted(ids) for c, ids in db.present_ids_by_category(store.conn).items()}
        reader = store.reader()
        hits = {}
        for c in CATEGORIES:
            scores, ids = reader.search(c, queries, 20)
            hits[c] = [[(int(j), round(float(s), 4)) for s, j in zip(srow, irow) if int(j) in present.get(c, ())][:5]
                       for srow, irow in zip(scores, ids)]
        return present, hits
    finally:
        store.close()


def _expected(rows, queries):
    """The same view computed by brute force from {photo id: (category, vector)}."""
    present, hits = {}, {}
    for c in CATEGORIES:
        ids = np.asarray(sorted(i for i, (cc, _) in rows.items() if cc == c), np.int64)
        present[c] = ids.tolist()
        scores, idx = top_k(np.stack([rows[i][1] for i in ids]), queries, 5)
        hits[c] = [[(int(ids[j]), round(float(s), 4)) for s, j in zip(srow, irow)] for srow, irow in zip(scores, idx)]
    return present, hits


def _same(seen, expected) -> bool:
    present_a, hits_a = seen
    present_b, hits_b = expected
    if present_a != present_b:
        return False
    for c in CATEGORIES:   # ids equal, or a swap between scores equal to 1e-4 (float32 vs FAISS vs Milvus)
        for a, b in zip(hits_a[c], hits_b[c]):
            if [s for _, s in a] != [s for _, s in b] or ({i for i, _ in a} != {i for i, _ in b} and
                                                         len({s for _, s in a}) == len(a)):
                return False
    return True


@pytest.fixture
def contract(vectors_backend, tmp_path):
    """A store with 200 photos, the add (40 photos) and the removal (10 of them) to apply, and the views
    expected before, after the add and after the removal (brute force)."""
    name, vectors = vectors_backend
    root = tmp_path / "store"
    base, new = _vectors(200, 0), _vectors(40, 1)
    base_cats = [CATEGORIES[i % 2] for i in range(200)]
    new_cats = [CATEGORIES[(i // 3) % 2] for i in range(40)]
    store = VectorStore(root, DIM, "Flat", vectors)
    first = store.add(base_cats, base)
    store.close()
    ids = sorted(i for ids in first["photo_ids"].values() for i in ids)
    rows = {i: (c, v) for i, c, v in zip(ids, base_cats, base)}
    added_ids = list(range(max(ids) + 1, max(ids) + 41))
    after_add = {**rows, **{i: (c, v) for i, c, v in zip(added_ids, new_cats, new)}}
    victims = added_ids[::4]
    np.savez(tmp_path / "add.npz", vectors=new, categories=np.asarray(new_cats))
    queries = _vectors(6, 2)
    return {"name": name, "vectors": vectors, "root": root, "queries": queries, "add": tmp_path / "add.npz",
            "victims": json.dumps(victims), "before": _expected(rows, queries),
            "after_add": _expected(after_add, queries),
            "after_remove": _expected({i: r for i, r in after_add.items() if i not in victims}, queries)}


def test_add_and_remove_match_a_brute_force_search(contract):
    c = contract
    assert _same(_seen(c["root"], c["vectors"], c["queries"]), c["before"])
    code, err = _child(c["root"], c["vectors"], "add", c["add"])
    assert code == 0, err
    assert _same(_seen(c["root"], c["vectors"], c["queries"]), c["after_add"])
    code, err = _child(c["root"], c["vectors"], "remove", c["victims"])
    assert code == 0, err
    assert _same(_seen(c["root"], c["vectors"], c["queries"]), c["after_remove"])


@pytest.mark.slow
@pytest.mark.parametrize("point", ADD_POINTS)
def test_an_add_killed_at_each_step_is_before_or_after(contract, point):
    c = contract
    code, err = _child(c["root"], c["vectors"], "add", c["add"], kill_at=point)
    assert code == -signal.SIGKILL, err
    expected = c["after_add"] if point == "add:applied" else c["before"]
    assert _same(_seen(c["root"], c["vectors"], c["queries"]), expected), f"{c['name']}: killed at {point}"
    code, err = _child(c["root"], c["vectors"], "reconcile")   # the next writer finishes it
    assert code == 0, err
    # killed before its first commit the add never happened (its journal is deleted); after it, it is finished
    after = c["before"] if point == "add:journal-written" else c["after_add"]
    assert _same(_seen(c["root"], c["vectors"], c["queries"]), after), f"{c['name']}: rerun after {point}"


@pytest.mark.slow
@pytest.mark.parametrize("point", REMOVE_POINTS)
def test_a_removal_killed_at_each_step_is_after(contract, point):
    c = contract
    assert _child(c["root"], c["vectors"], "add", c["add"])[0] == 0
    code, err = _child(c["root"], c["vectors"], "remove", c["victims"], kill_at=point)
    if point == "remove:vectors-deleted" and c["name"] == "faiss":
        assert code == 0, err    # no vectors to delete: segment files keep tombstones instead
    else:
        assert code == -signal.SIGKILL, err
    assert _same(_seen(c["root"], c["vectors"], c["queries"]), c["after_remove"]), f"{c['name']}: at {point}"
    code, err = _child(c["root"], c["vectors"], "reconcile")
    assert code == 0, err
    assert _same(_seen(c["root"], c["vectors"], c["queries"]), c["after_remove"])
    store = VectorStore(c["root"], DIM, "Flat", c["vectors"])
    try:   # nothing of the removed photos is left behind in the store itself
        held = {int(i) for cat in CATEGORIES for i in store.reader().live_ids(cat)}
    finally:
        store.close()
    assert not held & set(json.loads(c["victims"]))


def test_every_row_is_read_back_page_by_page(vectors_backend, tmp_path, monkeypatch):
    """Reading a category's rows back (check, moving vectors, recall measurements) pages through all of them:
    with pages of 7 rows, every id and vector of 200 photos is found once."""
    import detret.catalogue.milvus as milvus

    name, vectors = vectors_backend
    store = VectorStore(tmp_path / "store", DIM, "Flat", vectors)
    try:
        x = _vectors(200, 5)
        added = store.add([CATEGORIES[i % 2] for i in range(200)], x)
        monkeypatch.setattr(milvus, "PAGE_ROWS", 7)
        reader = store.reader()
        assert reader.categories() == sorted(CATEGORIES)
        for c in CATEGORIES:
            expected = sorted(added["photo_ids"][c])
            assert reader.live_ids(c).tolist() == expected
            if store.milvus is not None:
                ids, got = store.milvus.rows_of(c, with_vectors=True)
                assert ids.tolist() == expected and np.array_equal(got, x[np.asarray(expected) - min(
                    i for v in added["photo_ids"].values() for i in v)])
    finally:
        store.close()


def test_auto_switches_milvus_to_hnsw_and_tunes_it_to_the_recall_target(tmp_path, monkeypatch):
    """`--index auto` on Milvus: exact (FLAT) while small; past the threshold (lowered here to 300 photos) the
    writer switches the collection to HNSW, measures recall@20 against a brute-force search of the stored
    vectors and tunes ef; a reader searches with the tuned ef, and its answers match brute force."""
    import detret.catalogue.milvus as milvus

    monkeypatch.setattr(milvus, "AUTO_MIN_PHOTOS", 300)
    store = VectorStore(tmp_path / "store", DIM, "auto", "milvus:vectors.db")
    try:
        x = _vectors(400, 7)
        first = store.add([CATEGORIES[0]] * 200, x[:200])
        assert first["maintenance"] == [] and milvus.read_state(db.get_meta(store.conn))["index"] == "Flat"
        second = store.add([CATEGORIES[0]] * 200, x[200:])
        state = milvus.read_state(db.get_meta(store.conn))
        assert second["maintenance"] and state["index"] == "HNSW" and state["measured_on"] == 400
        assert state["recall_at_20"] >= milvus.RECALL_TARGET and state["search"]["ef"] >= 64
        queries = _vectors(20, 8)
        _, found = store.reader().search(CATEGORIES[0], queries, 20)
        ids = np.asarray(sorted(i for v in (first, second) for i in v["photo_ids"][CATEGORIES[0]]), np.int64)
        _, exact = top_k(x, queries, 20)
        recall = np.mean([len(set(f) & set(ids[e])) / 20 for f, e in zip(found.tolist(), exact)])
        assert recall >= milvus.RECALL_TARGET
    finally:
        store.close()
