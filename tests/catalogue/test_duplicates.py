"""Duplicates at `catalogue add`: re-encodings, resizes and small crops of a stored photo (or of a photo of
the same add) are found and reported with the photo they copy, exact copies under another product too;
distinct photos of one product are not. Pixel comparisons are checked against a hand-made alignment."""
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detret.catalogue.add import add_products
from detret.catalogue.create import create_catalogue
from detret.catalogue.duplicates import MAX_DIFFERENCE, picture_difference
from detret.config.pipeline import load_pipeline_config
from detret.errors import InputError

from tests.helpers import copy_catalogue

from .helpers import demo_images, photo_rows, write_products_csv


def _same_product_photos(pcfg, n_products=6):
    """[(category, product, [photo ids])] of demo products with two or more shop photos."""
    root = Path(pcfg.data.street2shop.root) / "meta" / "json"
    by = {}
    for f in sorted(root.glob("retrieval_*.json")):
        for r in json.loads(f.read_text()):
            by.setdefault((f.stem.split("_", 1)[1], r["product"]), set()).add(int(r["photo"]))
    return [(c, str(p), sorted(ids)) for (c, p), ids in sorted(by.items()) if len(ids) >= 2][:n_products]


def _photo(pcfg, pid):
    return np.asarray(Image.open(demo_images(pcfg) / f"{pid:09d}.jpg").convert("RGB"))


def _jpeg(rgb, quality=40):
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def _variants(rgb):
    h, w = rgb.shape[:2]
    image = Image.fromarray(rgb)
    return {"jpeg q40": _jpeg(rgb), "half size": np.asarray(image.resize((w // 2, h // 2), Image.BILINEAR)),
            "6% crop": rgb[int(h * .06):h - int(h * .06), int(w * .06):w - int(w * .06)],
            "8% off one side": rgb[:, int(w * .08):],
            "crop, resized, re-encoded": _jpeg(np.asarray(image.crop((13, 6, w - 9, h - 20)).resize(
                (int((w - 22) * .7), int((h - 26) * .7)))), 70)}


@pytest.fixture(scope="module")
def pcfg(demo_quick):
    return load_pipeline_config(demo_quick[1]["config"], ["device=cpu"])


def test_pictures_of_one_photo_are_close_and_distinct_photos_are_not(pcfg):
    products = _same_product_photos(pcfg)
    for _, _, ids in products:
        original = _photo(pcfg, ids[0])
        for name, variant in _variants(original).items():
            difference = picture_difference(variant, original)
            assert difference is not None and difference <= MAX_DIFFERENCE, (ids[0], name, difference)
        for other in ids[1:]:
            difference = picture_difference(_photo(pcfg, other), original)
            assert difference is None or difference > MAX_DIFFERENCE, (ids[0], other, difference)
    # a crop at the working resolution's own scale: the alignment is exact, the difference 0 (hand-computed)
    big = np.kron(_photo(pcfg, products[0][2][0])[:96, :80], np.ones((1, 1, 1), np.uint8))
    assert picture_difference(big[:, 8:], big) == pytest.approx(0.0, abs=0.5)


def _write(folder, name, rgb):
    """The photo saved as ``folder/name``; its path as a product list beside ``folder`` names it."""
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(folder / name, quality=95)
    return f"../{folder.name}/{name}"


def test_add_reports_and_skips_duplicates(pcfg, tmp_path):
    (category, product, ids), (category2, _, ids2) = _same_product_photos(pcfg, 2)
    root = tmp_path / "cat"
    create_catalogue(pcfg, root, "tri-crops")
    photos = tmp_path / "photos"
    first = [f"{_write(photos, 'a.jpg', _photo(pcfg, ids[0]))},{product},{category}"]
    assert add_products(root, write_products_csv(tmp_path / "one", first, "photo,product,category")).added == 1
    variants = _variants(_photo(pcfg, ids[0]))
    lines = [f"{_write(photos, 'b.jpg', _photo(pcfg, ids[1]))},{product},{category}",       # distinct: not a duplicate
             f"{_write(photos, 'a_q40.jpg', variants['jpeg q40'])},{product},{category}",    # near, same product
             f"{_write(photos, 'a_half.jpg', variants['half size'])},Q,{category}",          # near, another product
             f"{_write(photos, 'a_crop.jpg', variants['6% crop'])},R,{category}",            # near
             f"../photos/a.jpg,S,{category}",                                                 # exact, another product
             f"{_write(photos, 'c.jpg', _photo(pcfg, ids2[0]))},T,{category2}",              # new
             f"{_write(photos, 'c_q40.jpg', _jpeg(_photo(pcfg, ids2[0])))},U,{category2}"]   # near c, of this add
    csv = write_products_csv(tmp_path / "two", lines, "photo,product,category")
    kept_copy = copy_catalogue(root, tmp_path / "kept")
    report = add_products(root, csv, duplicates="skip")
    found = {d["photo"]: d for d in report.duplicates}
    assert set(found) == {"../photos/a_q40.jpg", "../photos/a_half.jpg", "../photos/a_crop.jpg", "../photos/a.jpg",
                          "../photos/c_q40.jpg"}
    assert found["../photos/a.jpg"]["kind"] == "exact" and found["../photos/a.jpg"]["of"]["product"] == product
    stored_a = next(r for r in photo_rows(root) if r["source"] == "../photos/a.jpg")
    for name in ("a_q40", "a_half", "a_crop"):
        d = found[f"../photos/{name}.jpg"]
        assert d["kind"] == "near" and d["of"]["photo_id"] == stored_a["photo_id"] and d["difference"] <= MAX_DIFFERENCE
    assert found["../photos/c_q40.jpg"]["of"] == {"line": 7, "photo": "../photos/c.jpg", "product": "T"}
    assert all(d["action"] == "skipped" for d in report.duplicates)
    assert report.added == 2 and {r["product"] for r in photo_rows(root)} == {product, "T"}
    kept = add_products(kept_copy, csv, duplicates="keep")
    assert kept.added == 7 and len(kept.duplicates) == 5 and all(d["action"] == "kept" for d in kept.duplicates)
    off = add_products(tmp_path / "cat", write_products_csv(tmp_path / "three", [
        f"../photos/a_q40.jpg,V,{category}"], "photo,product,category"), duplicates="off")
    assert off.added == 1 and off.duplicates == []
    with pytest.raises(InputError, match="--duplicates 'drop'"):
        add_products(root, csv, duplicates="drop")
