"""After a power cut or a full disk: what a lost rename or a lost journal leaves, how the writers cope (roll back,
recompute), what `catalogue check` reports and what `catalogue repair` restores. A power cut is simulated
by undoing what the disk did not keep: a journal deleted after its commit, an index file put back to its
version before a change, a stored photo deleted."""
import json
import sqlite3

import numpy as np
import pytest
from PIL import Image

from detret.catalogue.add import add_products
from detret.catalogue.changes import NewPhoto, begin_add
from detret.catalogue.check import check_catalogue, repair_catalogue
from detret.catalogue.store import Catalogue
from detret.cli.app import main
from tests.helpers import copy_catalogue

from .helpers import demo_images, index_vectors, link_photos, photo_rows, write_products_csv


def _add_two(pcfg, cat_dir, folder, products=("A1", "A2"), ids=(1, 2), category="bags"):
    """Two photos the catalogue does not hold yet (shop photos saved again as PNG: new contents) added."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in ids:
        Image.open(demo_images(pcfg) / f"{i:09d}.jpg").save(folder / f"new_{i}.png")
    lines = [f"new_{i}.png,{p},{category},,," for p, i in zip(products, ids)]
    return add_products(cat_dir, write_products_csv(folder, lines))


def _state(conn_path):
    with sqlite3.connect(conn_path) as conn:
        return (conn.execute("SELECT COUNT(*) FROM photos").fetchone()[0],
                conn.execute("SELECT COUNT(*) FROM changes WHERE state != 'done'").fetchone()[0])


def test_a_healthy_catalogue_checks_ok(demo_catalogue):
    root, _ = demo_catalogue
    report = check_catalogue(root)
    assert report["ok"], report


def test_a_pending_add_whose_journal_was_lost_is_rolled_back(demo_catalogue, tmp_path):
    """Before: every later writer failed with FileNotFoundError for good."""
    root, pcfg = demo_catalogue
    cat_dir = copy_catalogue(root, tmp_path / "cat")
    photos_before = photo_rows(cat_dir)
    with Catalogue.writing(cat_dir, "test") as cat:
        row = dict(cat.conn.execute("SELECT * FROM photos LIMIT 1").fetchone())
        new = NewPhoto("LOST", row["category"], "f" * 64, row["file"], None, 10, 10, None, "full", title="T")
        change = begin_add(cat.applier, [new], np.ones((1, cat.card.dim), np.float32))
        cat.layout.journal_file(change).unlink()   # the power cut took the journal's rename
    assert not check_catalogue(cat_dir)["ok"]
    report = _add_two(pcfg, cat_dir, tmp_path / "in")   # the next writer: rolls back, then adds
    assert report.added == 2
    rows = photo_rows(cat_dir)
    assert [r for r in rows if r["product"] == "LOST"] == []
    assert [r for r in rows if r["photo_id"] in {p["photo_id"] for p in photos_before}] == photos_before
    with sqlite3.connect(cat_dir / "catalogue.sqlite") as conn:
        detail = json.loads(conn.execute("SELECT detail FROM changes WHERE change_id = ?", (change,)).fetchone()[0])
        assert "journal" in detail["rolled_back"] and "missing" in detail["rolled_back"]
        assert conn.execute("SELECT COUNT(*) FROM products WHERE product = 'LOST'").fetchone()[0] == 0
    assert check_catalogue(cat_dir)["ok"]


def test_an_unreadable_journal_is_rolled_back_too(demo_catalogue, tmp_path):
    root, _ = demo_catalogue
    cat_dir = copy_catalogue(root, tmp_path / "cat")
    with Catalogue.writing(cat_dir, "test") as cat:
        row = dict(cat.conn.execute("SELECT * FROM photos LIMIT 1").fetchone())
        new = NewPhoto("BAD", row["category"], "e" * 64, row["file"], None, 10, 10, None, "full")
        change = begin_add(cat.applier, [new], np.ones((1, cat.card.dim), np.float32))
        path = cat.layout.journal_file(change)
        path.write_bytes(path.read_bytes()[:40])   # torn
    with Catalogue.writing(cat_dir, "test") as cat:
        assert cat.reconciled == [change]
    assert not [r for r in photo_rows(cat_dir) if r["product"] == "BAD"]


def test_a_new_title_is_not_visible_before_its_add_is_applied(demo_catalogue, tmp_path):
    root, _ = demo_catalogue
    cat_dir = copy_catalogue(root, tmp_path / "cat")
    with Catalogue.writing(cat_dir, "test") as cat:
        row = dict(cat.conn.execute("SELECT p.*, pr.title FROM photos p JOIN products pr USING (product) "
                                    "LIMIT 1").fetchone())
        new = NewPhoto(row["product"], row["category"], "d" * 64, row["file"], None, 10, 10, None, "full",
                       title="Renamed", url="https://shop.example/renamed")
        change = begin_add(cat.applier, [new], np.ones((1, cat.card.dim), np.float32))
        title = cat.conn.execute("SELECT title, url FROM products WHERE product = ?", (row["product"],)).fetchone()
        assert tuple(title) != ("Renamed", "https://shop.example/renamed")   # pending: readers see the old one
    with Catalogue.writing(cat_dir, "test") as cat:   # reconcile applies the change, and its title with it
        assert cat.reconciled == [change]
        title = cat.conn.execute("SELECT title, url FROM products WHERE product = ?", (row["product"],)).fetchone()
        assert tuple(title) == ("Renamed", "https://shop.example/renamed")


def test_a_lost_segment_is_found_by_check_and_repaired(demo_catalogue, tmp_path):
    """A registered segment whose files a disk lost: readers skip it (they do not fail), a later add of the
    same content computes its descriptors again, check reports it, repair unregisters it and computes the
    missing vectors again."""
    root, pcfg = demo_catalogue
    cat_dir = copy_catalogue(root, tmp_path / "cat")
    report = _add_two(pcfg, cat_dir, tmp_path / "in")
    new_ids = [p["photo_id"] for p in photo_rows(cat_dir) if p["change_id"] == report.change_id]
    added_vectors = {i: v for i, v in index_vectors(cat_dir, "bags").items() if i in new_ids}
    segment = f"add-{report.change_id:08d}"
    for f in (cat_dir / "indexes" / "bags").glob(f"{segment}.*"):
        f.unlink()   # the disk lost them
    found = check_catalogue(cat_dir)
    assert not found["ok"] and found["lost_segments"] == {"bags": [segment]}
    assert found["vectors"]["bags"]["missing_vectors"] == sorted(new_ids)
    again = _add_two(pcfg, cat_dir, tmp_path / "in2", products=("B1", "B2"))   # same photos, other products
    assert again.added == 2 and again.reused_descriptors == 0   # recomputed, not read from a missing vector
    assert _cli_check(cat_dir) == 1
    repaired = repair_catalogue(cat_dir)
    assert repaired["reembedded"] == sorted(new_ids)
    vectors = index_vectors(cat_dir, "bags")
    for i, v in added_vectors.items():
        assert np.allclose(vectors[i], v, atol=1e-5)   # the descriptor the add had computed
    assert check_catalogue(cat_dir)["ok"] and _cli_check(cat_dir) == 0


def test_a_lost_photo_is_a_404_then_removed_by_repair(demo_catalogue, tmp_path):
    root, _ = demo_catalogue
    cat_dir = copy_catalogue(root, tmp_path / "cat")
    victim = photo_rows(cat_dir)[0]
    (cat_dir / victim["file"]).unlink()
    found = check_catalogue(cat_dir)
    assert found["missing_files"] == [victim["file"]]
    repaired = repair_catalogue(cat_dir)
    assert repaired["removed_missing_files"] == [victim["file"]]
    assert victim["photo_id"] not in {p["photo_id"] for p in photo_rows(cat_dir)}
    assert check_catalogue(cat_dir)["ok"]


def test_files_nobody_collects_are_reported_and_deleted(demo_catalogue, tmp_path):
    root, _ = demo_catalogue
    cat_dir = copy_catalogue(root, tmp_path / "cat")
    stray = cat_dir / "photos" / "ab" / ("ab" + "0" * 62 + ".jpg")   # stored by an add killed before its commit
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"x")
    temp = cat_dir / "photos" / ".photo.abc.tmp.jpg"
    temp.write_bytes(b"y")
    dead = tmp_path / f".cat.reindexing-{2**22 + 12345}"   # a killed reindex's folder (no such process)
    dead.mkdir()
    (cat_dir / "staging" / "0123").mkdir(parents=True)
    found = check_catalogue(cat_dir)
    assert set(found["orphan_files"]) == {stray.relative_to(cat_dir).as_posix(), temp.relative_to(cat_dir).as_posix()}
    assert set(found["leftovers"]) == {str(dead), str(cat_dir.resolve() / "staging")}
    repair_catalogue(cat_dir)
    assert not stray.exists() and not temp.exists() and not dead.exists()
    assert check_catalogue(cat_dir)["ok"]


def test_a_failed_add_leaves_no_stored_photo_behind(demo_catalogue, tmp_path, monkeypatch):
    import detret.catalogue.add as add

    root, pcfg = demo_catalogue
    cat_dir = copy_catalogue(root, tmp_path / "cat")
    before = sorted(p for p in (cat_dir / "photos").rglob("*") if p.is_file())
    monkeypatch.setattr(add, "begin_add", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("crash")))
    with pytest.raises(RuntimeError, match="crash"):
        _add_two(pcfg, cat_dir, tmp_path / "in", ids=(5, 6))
    assert sorted(p for p in (cat_dir / "photos").rglob("*") if p.is_file()) == before


def test_a_thin_photo_in_a_product_list_is_unreadable_and_the_rest_is_added(demo_catalogue, tmp_path):
    """Before: it crashed `catalogue add` at the same staging batch on every rerun."""
    root, pcfg = demo_catalogue
    cat_dir = copy_catalogue(root, tmp_path / "cat")
    link_photos(pcfg, tmp_path / "in", [1, 2])
    Image.new("RGB", (22000, 8)).save(tmp_path / "in" / "thin.png")
    report = add_products(cat_dir, write_products_csv(tmp_path / "in", ["shop_1.jpg,T1,bags,,,", "thin.png,T2,bags,,,",
                                                                "shop_2.jpg,T3,bags,,,"]))
    assert report.added == 2 and [u["line"] for u in report.unreadable] == [3]
    assert "too elongated" in report.unreadable[0]["reason"]


def test_a_photo_the_models_fail_on_is_unreadable_alone(demo_catalogue, tmp_path, monkeypatch):
    """Past the decoder's checks, the detector raising on one photo of a batch: that photo is listed, the
    others get the descriptors they get in a batch without it."""
    from detret.catalogue.binding import BoundModels

    root, pcfg = demo_catalogue
    clean = add_products(copy_catalogue(root, tmp_path / "clean"), _csv_of(pcfg, tmp_path / "a", [1, 2, 3]))
    cat_dir = copy_catalogue(root, tmp_path / "cat")
    real = BoundModels.detect
    csv = _csv_of(pcfg, tmp_path / "b", [1, 2, 3])
    bad_width = 250   # photo 2 alone has this width
    Image.open(tmp_path / "b" / "new_2.png").resize((bad_width, 300)).save(tmp_path / "b" / "new_2.png")

    def detect(self, photos):
        if any(p.shape[1] == bad_width for p in photos):
            raise ValueError("the detector cannot resize this photo")
        return real(self, photos)

    monkeypatch.setattr(BoundModels, "detect", detect)
    report = add_products(cat_dir, csv)
    assert report.added == 2 and [u["line"] for u in report.unreadable] == [3]
    assert "the models cannot read it (ValueError" in report.unreadable[0]["reason"]
    got, want = index_vectors(cat_dir, "bags"), index_vectors(tmp_path / "clean", "bags")
    for product in ("C1", "C3"):
        pid = next(p["photo_id"] for p in photo_rows(cat_dir) if p["product"] == product)
        ref = next(p["photo_id"] for p in photo_rows(tmp_path / "clean") if p["product"] == product)
        assert np.allclose(got[pid], want[ref], atol=1e-5)
    assert clean.added == 3


def _csv_of(pcfg, folder, ids):
    """A product list of shop photos saved again as PNG (contents the catalogue does not hold: computed)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in ids:
        Image.open(demo_images(pcfg) / f"{i:09d}.jpg").save(folder / f"new_{i}.png")
    return write_products_csv(folder, [f"new_{i}.png,C{n},bags,,," for n, i in enumerate(ids, start=1)])


def _cli_check(cat_dir) -> int:
    """`detret catalogue check`'s exit code."""
    with pytest.raises(SystemExit) as exit_info:
        main(["catalogue", "check", str(cat_dir)])
    return exit_info.value.code
