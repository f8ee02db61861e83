"""The catalogue holds what the batch pipeline computed, adds photos as `detect` + `embed` would, and
refuses what it must: bad product lists, a second writer, model files that are not its own."""
import json
from pathlib import Path

import numpy as np
import pytest

from detret.catalogue.add import add_products
from detret.catalogue.binding import BoundModels, ModelMismatch, read_card
from detret.catalogue.create import create_catalogue, reindex_catalogue
from detret.catalogue.lock import CatalogueBusy, WriterLock
from detret.catalogue.remove import remove_products
from detret.catalogue.store import Catalogue
from detret.catalogue.vectors import load_vectors
from detret.cli.app import main
from detret.embed.artifact import read_descriptors
from detret.errors import InputError, UnknownNameError
from tests.helpers import copy_catalogue

from .helpers import demo_images, index_vectors, link_photos, photo_rows, write_products_csv


def test_import_gallery_holds_the_runs_rows_and_descriptors(demo_catalogue):
    root, pcfg = demo_catalogue
    desc, rows = read_descriptors(Path(pcfg.run_dir) / "embed-tri-crops", "gallery")
    photos = photo_rows(root)
    assert len(photos) == sum(len(r.products) for r in rows)
    by_source = {}
    for p in photos:
        by_source.setdefault((p["source"], p["product"]), p)
    for i, r in enumerate(rows):
        for product in r.products:
            p = by_source[(f"street2shop:{r.photo_id}", str(product))]
            assert p["state"] == "present" and p["category"] == r.category and p["rule"] == r.crop_rule
            assert np.array_equal(index_vectors(root, r.category)[p["photo_id"]], desc[i])


def test_catalogue_search_equals_brute_force_over_the_gallery(demo_catalogue):
    """The catalogue's index returns what an exhaustive inner product over the run's gallery gives."""
    root, pcfg = demo_catalogue
    run = Path(pcfg.run_dir) / "embed-tri-crops"
    gallery, rows = read_descriptors(run, "gallery")
    queries, qrows = read_descriptors(run, "queries")
    photo_of = {p["photo_id"]: p for p in photo_rows(root)}
    opened = Catalogue.open(root)
    reader = load_vectors(opened.layout, opened.conn)
    opened.close()
    for qi in range(0, len(qrows), 3):
        cat = qrows[qi].category
        members = [i for i, r in enumerate(rows) if r.category == cat]
        expected = sorted(((float(gallery[i] @ queries[qi]), rows[i].photo_id) for i in members),
                          key=lambda t: (-t[0], t[1]))[:5]
        scores, ids = reader.search(cat, queries[qi:qi + 1], 5)
        got = [(float(s), int(photo_of[int(j)]["source"].split(":")[1])) for s, j in zip(scores[0], ids[0])]
        assert [p for _, p in got] == [p for _, p in expected]
        assert np.allclose([s for s, _ in got], [s for s, _ in expected], atol=1e-5)


def test_add_crops_and_embeds_as_the_pipeline_does(demo_catalogue, tmp_path):
    """A shop photo added with the box `detect --split shop` chose gets the descriptor `embed` wrote;
    added without a box, the detector and the paper's policy choose that same crop."""
    root, pcfg = demo_catalogue
    cat_dir = copy_catalogue(root, tmp_path / "cat")
    desc, rows = read_descriptors(Path(pcfg.run_dir) / "embed-tri-crops", "gallery")
    picks = [0, len(rows) // 2, len(rows) - 1]
    link_photos(pcfg, tmp_path / "in", [rows[i].photo_id for i in picks])
    lines = []
    for i in picks:
        r = rows[i]
        box = '"' + ",".join(str(v) for v in r.box_xyxy) + '"'
        lines.append(f"shop_{r.photo_id}.jpg,boxed-{r.photo_id},{r.category},{box},,")
        lines.append(f"shop_{r.photo_id}.jpg,detected-{r.photo_id},{r.category},,,")
    report = add_products(cat_dir, write_products_csv(tmp_path / "in", lines))
    assert report.added == 6 and not report.unreadable
    shop = {json.loads(line)["photo_id"]: json.loads(line) for line in
            (Path(pcfg.run_dir) / "detect-shop" / "detections.jsonl").read_text().splitlines()}
    added = {p["product"]: p for p in photo_rows(cat_dir) if p["change_id"] == report.change_id}
    for i in picks:
        r = rows[i]
        boxed, detected = added[f"boxed-{r.photo_id}"], added[f"detected-{r.photo_id}"]
        assert boxed["rule"] == "given box"
        assert detected["rule"] == shop[r.photo_id]["crop"]["rule"]
        assert np.allclose(json.loads(detected["box_xyxy"]), shop[r.photo_id]["crop"]["box_xyxy"], atol=0.01)
        vectors = index_vectors(cat_dir, r.category)
        assert np.allclose(vectors[boxed["photo_id"]], desc[i], atol=1e-5)
        assert np.allclose(vectors[detected["photo_id"]], desc[i], atol=1e-5)


def test_add_skips_present_photos_and_lists_unreadable_ones(demo_catalogue, tmp_path):
    root, pcfg = demo_catalogue
    cat_dir = copy_catalogue(root, tmp_path / "cat")
    link_photos(pcfg, tmp_path / "in", [1, 2])
    (tmp_path / "in" / "page.jpg").write_text("<html>not found</html>")
    (tmp_path / "in" / "truncated.jpg").write_bytes((demo_images(pcfg) / f"{3:09d}.jpg").read_bytes()[:300])
    csv = write_products_csv(tmp_path / "in", ["shop_1.jpg,N1,bags,,Red bag,https://shop.example/n1",
                                       "page.jpg,N2,bags,,,", "missing.jpg,N3,tops,,,", "truncated.jpg,N4,tops,,,",
                                       "shop_2.jpg,N5,tops,\"900,900,950,950\",,", "shop_2.jpg,N6,tops,,,"])
    first = add_products(cat_dir, csv)
    assert first.added == 2
    assert [(u["line"], u["photo"]) for u in first.unreadable] == [
        (3, "page.jpg"), (4, "missing.jpg"), (5, "truncated.jpg"), (6, "shop_2.jpg")]
    assert "outside the photo" in first.unreadable[-1]["reason"]
    before = photo_rows(cat_dir)
    second = add_products(cat_dir, csv)
    assert second.added == 0 and second.already_present == 2 and second.change_id is None
    assert photo_rows(cat_dir) == before
    cat = Catalogue.open(cat_dir)
    title, url = cat.conn.execute("SELECT title, url FROM products WHERE product = 'N1'").fetchone()
    cat.close()
    assert (title, url) == ("Red bag", "https://shop.example/n1")


@pytest.mark.parametrize("lines, header, problem", [
    (["shop_1.jpg,P,shoes,,,"], None, "products.csv:2: unknown category 'shoes'"),
    (["shop_1.jpg,P,bags,\"1,2,3\",,"], None, "products.csv:2: box '1,2,3' is not four numbers"),
    (["shop_1.jpg,P,bags,\"5,5,1,1\",,"], None, "is empty"),
    (["shop_1.jpg,P,bags,,,", "shop_2.jpg,P,tops,,,"], None, "products.csv:3: product 'P' is 'tops' here but 'bags'"),
    (["shop_1.jpg,,bags,,,"], None, "products.csv:2: empty product"),
    (["shop_1.jpg,P"], "photo,product", "missing column(s) category"),
    (["shop_1.jpg,P,bags,,,javascript:alert(1)"], None, "products.csv:2: url 'javascript:alert(1)' is not an http"),
    (["shop_1.jpg,P,bags,,,data:text/html;base64,PHNjcmlwdD4="], None, "products.csv:2: url 'data:"),
    (["shop_1.jpg,P,bags,,,ftp://shop.example/p"], None, "products.csv:2: url 'ftp:"),
    (["shop_1.jpg,P,bags,,,https://"], None, "products.csv:2: url 'https://' is not"),
    (["shop_1.jpg,P,bags,,Caf<latin-1 e acute>,"], None, "products.csv:2: not UTF-8"),
])
def test_a_bad_product_list_changes_nothing(demo_catalogue, tmp_path, lines, header, problem):
    root, pcfg = demo_catalogue
    cat_dir = copy_catalogue(root, tmp_path / "cat")
    link_photos(pcfg, tmp_path / "in", [1, 2])
    before = photo_rows(cat_dir)
    csv = write_products_csv(tmp_path / "in", lines, header or "photo,product,category,box,title,url")
    csv.write_bytes(csv.read_bytes().replace(b"<latin-1 e acute>", b"\xe9"))   # a title saved in Latin-1
    with pytest.raises(InputError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        add_products(cat_dir, csv)
    assert photo_rows(cat_dir) == before


def test_a_product_keeps_its_category(demo_catalogue, tmp_path):
    root, pcfg = demo_catalogue
    cat_dir = copy_catalogue(root, tmp_path / "cat")
    product, category = next((p["product"], p["category"]) for p in photo_rows(cat_dir))
    other = "tops" if category != "tops" else "bags"
    link_photos(pcfg, tmp_path / "in", [1])
    with pytest.raises(InputError, match=f"already in the catalogue as '{category}'"):
        add_products(cat_dir, write_products_csv(tmp_path / "in", [f"shop_1.jpg,{product},{other},,,"]))


def test_remove_a_product_or_a_photo(demo_catalogue, tmp_path):
    root, pcfg = demo_catalogue
    cat_dir = copy_catalogue(root, tmp_path / "cat")
    photos = photo_rows(cat_dir)
    product = photos[0]["product"]
    mine = [p for p in photos if p["product"] == product]
    out = remove_products(cat_dir, product=product)
    assert out["removed_photos"] == len(mine)
    left = photo_rows(cat_dir)
    assert {p["photo_id"] for p in left} == {p["photo_id"] for p in photos} - {p["photo_id"] for p in mine}
    assert not set(index_vectors(cat_dir, mine[0]["category"])) & {p["photo_id"] for p in mine}
    shared = {p["file"] for p in left}
    for p in mine:
        assert (cat_dir / p["file"]).exists() == (p["file"] in shared)
    cat = Catalogue.open(cat_dir)
    assert cat.conn.execute("SELECT COUNT(*) FROM products WHERE product = ?", (product,)).fetchone()[0] == 0
    cat.close()
    victim = left[0]
    remove_products(cat_dir, photo=str(cat_dir / victim["file"]))  # by content
    assert victim["photo_id"] not in {p["photo_id"] for p in photo_rows(cat_dir)}
    with pytest.raises(UnknownNameError, match="no product 'nope'"):
        remove_products(cat_dir, product="nope")


def test_only_one_writer_at_a_time(demo_catalogue, tmp_path):
    root, pcfg = demo_catalogue
    cat_dir = copy_catalogue(root, tmp_path / "cat")
    link_photos(pcfg, tmp_path / "in", [1])
    csv = write_products_csv(tmp_path / "in", ["shop_1.jpg,N1,bags,,,"])
    with WriterLock(cat_dir / "catalogue.lock", "a test holding the lock"):
        with pytest.raises(CatalogueBusy, match=r"\(a test holding the lock\) is changing this catalogue"):
            add_products(cat_dir, csv)
        with pytest.raises(CatalogueBusy):
            remove_products(cat_dir, product="N1")
    assert add_products(cat_dir, csv).added == 1


def test_model_files_other_than_its_own_are_refused(demo_catalogue, tmp_path):
    root, _ = demo_catalogue
    cat_dir = copy_catalogue(root, tmp_path / "cat")
    card = read_card(cat_dir)
    models = BoundModels(card, cat_dir, "cpu")
    models.check_identity(card.identity)
    with pytest.raises(ModelMismatch, match="catalogue reindex"):
        models.check_identity("0" * 64)
    other = copy_catalogue(root, tmp_path / "other")
    model_json = json.loads((other / "model.json").read_text())
    model_json["identity"] = "f" * 64  # a model.json of another model
    (other / "model.json").write_text(json.dumps(model_json))
    with pytest.raises(ModelMismatch, match="not the model .* the catalogue's descriptors were computed with"):
        Catalogue.open(other)
    checkpoint = cat_dir / card.descriptor.leaves()[0].models[0]["checkpoint"]
    checkpoint.write_bytes(checkpoint.read_bytes() + b"\0")
    with pytest.raises(ModelMismatch, match="not the model file this catalogue was built with.*catalogue reindex"):
        BoundModels(card, cat_dir, "cpu")


def test_create_refuses_an_existing_folder_and_unusable_indexes(demo_catalogue, tmp_path):
    root, pcfg = demo_catalogue
    with pytest.raises(InputError, match="already exists; `detret catalogue reindex"):
        create_catalogue(pcfg, root, "tri-crops")
    with pytest.raises(InputError, match="FAISS cannot build it"):
        create_catalogue(pcfg, tmp_path / "ivf", "tri-crops", index_factory="IVF4,Nonsense")
    with pytest.raises(InputError, match="an exact index; use Flat"):
        create_catalogue(pcfg, tmp_path / "flat", "tri-crops", index_factory="SQbf16")
    with pytest.raises(InputError, match="leave out IDMap"):
        create_catalogue(pcfg, tmp_path / "idmap", "tri-crops", index_factory="IDMap2,HNSW32")
    assert not (tmp_path / "ivf").exists() and not list(tmp_path.glob(".*"))


def test_reindex_binds_another_run_and_embeds_every_photo_again(demo_catalogue, tmp_path):
    root, pcfg = demo_catalogue
    cat_dir = copy_catalogue(root, tmp_path / "cat")
    before = photo_rows(cat_dir)
    out = reindex_catalogue(pcfg, cat_dir, "tri-full")
    card = read_card(cat_dir)
    assert card.run == "tri-full" and card.identity == out["identity"] != read_card(root).identity
    after = photo_rows(cat_dir)
    assert sorted((p["product"], p["sha256"]) for p in after) == sorted((p["product"], p["sha256"]) for p in before)
    # tri-full's gallery is whole photos: the reindexed vectors are its gallery descriptors
    desc, rows = read_descriptors(Path(pcfg.run_dir) / "embed-tri-full", "gallery")
    row_of = {(str(p), r.photo_id): i for i, r in enumerate(rows) for p in r.products}
    source_of = {(p["product"], p["sha256"]): p["source"] for p in before}
    for p in after[:10]:
        gallery_photo = int(source_of[(p["product"], p["sha256"])].split(":")[1])
        assert np.allclose(index_vectors(cat_dir, p["category"])[p["photo_id"]], desc[row_of[(p["product"], gallery_photo)]],
                           atol=1e-5)
    assert not list(tmp_path.glob(".cat.*"))


def test_cli_info_and_errors(demo_catalogue, tmp_path, capsys):
    root, _ = demo_catalogue
    with pytest.raises(SystemExit) as exit_info:
        main(["catalogue", "info", str(root), "--json"])
    assert exit_info.value.code == 0
    info = json.loads(capsys.readouterr().out)
    assert info["photos"] == len(photo_rows(root)) and info["model"]["identity"] == read_card(root).identity
    assert info["index"]["factory"] == "Flat" and info["size_on_disk_bytes"] > 0
    for category, counts in info["categories"].items():   # each category's index: exact, its rows, no training
        state = info["index"]["categories"][category]
        assert state["index"] == "exact" and state["rows"] == counts["photos"] and state["tombstones"] == 0
        assert state["recall_at_20"] is None and state["segments"] >= 1
    with pytest.raises(SystemExit) as exit_info:
        main(["catalogue", "info", str(tmp_path / "none")])
    assert exit_info.value.code == 2
    assert "no such catalogue" in capsys.readouterr().err


def test_a_photo_listed_for_another_product_is_not_embedded_again(demo_catalogue, tmp_path, monkeypatch):
    from detret.catalogue import compute

    root, pcfg = demo_catalogue
    cat_dir = copy_catalogue(root, tmp_path / "cat")
    desc, rows = read_descriptors(Path(pcfg.run_dir) / "embed-tri-crops", "gallery")
    r = rows[3]
    link_photos(pcfg, tmp_path / "in", [r.photo_id, rows[4].photo_id])
    calls = []
    real = compute.compute_batch
    monkeypatch.setattr(compute, "compute_batch", lambda models, items: calls.append(len(items)) or real(models, items))
    # the run's photo, listed for a new product (its imported crop was the detector's), twice in one list,
    # and a photo new to the catalogue listed for two products
    csv = write_products_csv(tmp_path / "in", [f"shop_{r.photo_id}.jpg,again-1,{r.category},,,",
                                       f"shop_{r.photo_id}.jpg,again-2,{r.category},,,",
                                       f"shop_{rows[4].photo_id}.jpg,twin-1,{rows[4].category},\"1,1,30,30\",,",
                                       f"shop_{rows[4].photo_id}.jpg,twin-2,{rows[4].category},\"1,1,30,30\",,"])
    report = add_products(cat_dir, csv)
    assert report.added == 4 and report.reused_descriptors == 2 and calls == [1]
    added = {p["product"]: p for p in photo_rows(cat_dir) if p["change_id"] == report.change_id}
    vectors = index_vectors(cat_dir, r.category)
    assert np.array_equal(vectors[added["again-1"]["photo_id"]], desc[3])
    assert np.array_equal(vectors[added["again-2"]["photo_id"]], desc[3])
    twins = index_vectors(cat_dir, rows[4].category)
    assert np.array_equal(twins[added["twin-1"]["photo_id"]], twins[added["twin-2"]["photo_id"]])
    assert added["twin-1"]["rule"] == "given box" and added["again-1"]["rule"] == rows[3].crop_rule
