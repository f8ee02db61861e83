"""`catalogue add` and `catalogue remove` killed (SIGKILL) at any moment: a reader sees the catalogue as
before or as after, never between; rerunning the command ends with the uninterrupted result (same
products, same descriptors, same search results).

Each change runs as `python -m detret catalogue ...` in a child process on a copy of the demo's
catalogue. Kills come at every step of the change protocol (``DETRET_CATALOGUE_KILL_AT``, which makes
the process SIGKILL itself there), and at seeded random moments of the whole command.
"""
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from detret.catalogue.changes import KILL_POINT_ENV
from detret.catalogue.store import Catalogue
from detret.catalogue.vectors import load_vectors
from detret.embed.artifact import read_descriptors
from tests.helpers import copy_catalogue

# Through the CLI with the real models: the first and the last kill point of an add and the last of a removal.
# Every kill point of both (on FAISS files, Milvus Lite and its server) is checked at the store level by
# tests/catalogue/test_backends.py; these keep the whole command (start-up, models, CSV) in the loop.
ADD_POINTS = ["add:journal-written", "add:applied"]
REMOVE_POINTS = ["remove:files-freed"]


def _run(args, kill_at=None, kill_after_s=None):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop(KILL_POINT_ENV, None)
    if kill_at:
        env[KILL_POINT_ENV] = kill_at
    proc = subprocess.Popen([sys.executable, "-m", "detret", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    if kill_after_s is not None:
        try:
            proc.wait(timeout=kill_after_s)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=600)
    return proc.returncode, err.decode()


def snapshot(root: Path, queries: np.ndarray, categories):
    """What a reader sees: the visible (product, photo content) pairs with their descriptors, and the top 10
    of each query in its category as (product, photo content, score)."""
    cat = Catalogue.open(root)
    rows = {r["photo_id"]: (r["product"], r["sha256"]) for r in cat.conn.execute(
        "SELECT photo_id, product, sha256 FROM photos WHERE state = 'present'")}
    reader = load_vectors(cat.layout, cat.conn)
    vectors, results = {}, []
    for category in sorted(set(categories)):
        for i in reader.live_ids(category):
            if int(i) in rows:
                vectors[rows[int(i)]] = reader.vector(category, int(i))
    for q, category in zip(queries, categories):
        scores, ids = reader.search(category, q[None], 40)
        hits = [(rows[int(j)], round(float(s), 5)) for s, j in zip(scores[0], ids[0]) if int(j) in rows][:10]
        results.append(hits)
    cat.close()
    return set(rows.values()), vectors, results


def _same(a, b) -> bool:
    keys_a, vec_a, res_a = a
    keys_b, vec_b, res_b = b
    return keys_a == keys_b and vec_a.keys() == vec_b.keys() and \
        all(np.allclose(vec_a[k], vec_b[k], atol=1e-6) for k in vec_a) and res_a == res_b


@pytest.fixture(scope="module")
def setting(demo_catalogue, tmp_path_factory):
    """The product list to add, the query descriptors and categories that check search results, and the
    snapshots before and after an uninterrupted add and an uninterrupted removal."""
    root, pcfg = demo_catalogue
    work = tmp_path_factory.mktemp("atomic")
    images = Path(pcfg.data.street2shop.root) / "images"
    _, rows = read_descriptors(Path(pcfg.run_dir) / "embed-tri-crops", "gallery")
    lines = []
    for r in rows[::4]:
        (work / f"p{r.photo_id}.jpg").symlink_to(images / f"{r.photo_id:09d}.jpg")
        lines.append(f"p{r.photo_id}.jpg,new-{r.photo_id},{r.category}\n")
    csv = work / "products.csv"
    csv.write_text("photo,product,category\n" + "".join(lines))
    queries, qrows = read_descriptors(Path(pcfg.run_dir) / "embed-tri-crops", "queries")
    check = (queries[::5], [r.category for r in qrows[::5]])
    before = snapshot(root, *check)
    reference = copy_catalogue(root, work / "reference")
    assert _run(["catalogue", "add", str(reference), str(csv)])[0] == 0
    after_add = snapshot(reference, *check)
    victim = f"new-{rows[0].photo_id}"
    assert _run(["catalogue", "remove", str(reference), "--product", victim])[0] == 0
    after_remove = snapshot(reference, *check)
    assert not _same(before, after_add) and not _same(after_add, after_remove)
    return {"root": root, "csv": csv, "check": check, "before": before, "after_add": after_add,
            "after_remove": after_remove, "victim": victim, "reference": reference, "work": work}


@pytest.mark.parametrize("point", ADD_POINTS)
def test_add_killed_at_each_step(setting, tmp_path, point):
    cat = copy_catalogue(setting["root"], tmp_path / "cat")
    code, err = _run(["catalogue", "add", str(cat), str(setting["csv"])], kill_at=point)
    assert code == -signal.SIGKILL, err
    seen = snapshot(cat, *setting["check"])
    # an add is visible once committed (step 3); before that a reader sees the catalogue as it was
    expected = setting["after_add"] if point == "add:applied" else setting["before"]
    assert _same(seen, expected), f"killed at {point}: a reader sees a catalogue between before and after"
    code, err = _run(["catalogue", "add", str(cat), str(setting["csv"])])
    assert code == 0, err
    assert _same(snapshot(cat, *setting["check"]), setting["after_add"])
    assert not list((cat / "journal").glob("*")) and not list((cat / "indexes").rglob(".*"))


@pytest.mark.parametrize("point", REMOVE_POINTS)
def test_remove_killed_at_each_step(setting, tmp_path, point):
    cat = copy_catalogue(setting["reference"], tmp_path / "cat")
    # the reference already lost the victim: put the catalogue back to "after add" by adding it again
    assert _run(["catalogue", "add", str(cat), str(setting["csv"])])[0] == 0
    assert _same(snapshot(cat, *setting["check"]), setting["after_add"])
    code, err = _run(["catalogue", "remove", str(cat), "--product", setting["victim"]], kill_at=point)
    assert code == -signal.SIGKILL, err
    seen = snapshot(cat, *setting["check"])
    # both points come after the removal's one transaction: readers see the catalogue as after
    assert _same(seen, setting["after_remove"]), f"killed at {point}"
    code, err = _run(["catalogue", "remove", str(cat), "--product", setting["victim"]])
    assert code == 0, err
    assert _same(snapshot(cat, *setting["check"]), setting["after_remove"])


def test_add_killed_at_random_moments(setting, tmp_path):
    """Kills at seeded random moments of the whole command (start-up and model loading included): after
    each, a reader sees before or after; the last rerun completes the add."""
    cat = copy_catalogue(setting["root"], tmp_path / "cat")
    started = time.perf_counter()
    assert _run(["catalogue", "add", str(copy_catalogue(setting["root"], tmp_path / "timing")),
                 str(setting["csv"])])[0] == 0
    duration = time.perf_counter() - started
    rng = random.Random(0)
    for _ in range(3):
        _run(["catalogue", "add", str(cat), str(setting["csv"])], kill_after_s=rng.uniform(0.5, 1.0) * duration)
        seen = snapshot(cat, *setting["check"])
        assert _same(seen, setting["before"]) or _same(seen, setting["after_add"])
    assert _run(["catalogue", "add", str(cat), str(setting["csv"])])[0] == 0
    assert _same(snapshot(cat, *setting["check"]), setting["after_add"])
