"""`catalogue add CAT FOLDER`: a folder of photos by category and product, or flat (the detector names each
photo's category, each photo detected once); checked against the photos placed and against the detector
run directly."""
import os

import pytest

from detret.catalogue.add import add_products
from detret.catalogue.binding import BoundModels, read_card
from detret.catalogue.create import FoundationChoice, create_catalogue
from detret.catalogue.folder_import import read_photo_folder
from detret.config.pipeline import load_pipeline_config
from detret.detect import inference as detect_inference
from detret.detect.crops import accepted_detections
from detret.data.images import read_rgb
from detret.errors import InputError, MissingFileError

from .helpers import demo_images, photo_rows
from .test_duplicates import _same_product_photos


@pytest.fixture(scope="module")
def pcfg(demo_quick):
    return load_pipeline_config(demo_quick[1]["config"], ["device=cpu"])


def _place(pcfg, folder, pid):
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{pid}.jpg"
    os.symlink(demo_images(pcfg) / f"{pid:09d}.jpg", target)
    return target


def test_a_folder_by_category_and_product(pcfg, tmp_path):
    products = _same_product_photos(pcfg, 3)
    photos = tmp_path / "photos"
    expected = {}
    for category, product, ids in products:
        for pid in ids[:2]:
            _place(pcfg, photos / category / f"P-{product}", pid)
            expected[f"{category}/P-{product}/{pid}.jpg"] = (f"P-{product}", category)
    loose_category = products[0][0]
    _place(pcfg, photos / loose_category, products[1][2][0])     # a photo right in a category folder: its own product
    expected[f"{loose_category}/{products[1][2][0]}.jpg"] = (str(products[1][2][0]), loose_category)
    (photos / loose_category / "notes.txt").write_text("not a photo")
    (photos / loose_category / ".hidden.jpg").write_bytes(b"left out")
    root = tmp_path / "cat"
    create_catalogue(pcfg, root, "tri-crops")
    report = add_products(root, photos)
    assert report.added == len(expected) and not report.unreadable
    assert {r["source"]: (r["product"], r["category"]) for r in photo_rows(root)} == expected
    assert set(report.crop_rules) <= {"detection", "fallback"}


def test_a_flat_folder_is_named_by_the_detector_each_photo_detected_once(pcfg, tmp_path, monkeypatch):
    ids = [pid for _, _, pids in _same_product_photos(pcfg, 4) for pid in pids[:2]]
    photos = tmp_path / "flat"
    for pid in ids:
        _place(pcfg, photos, pid)
    root = tmp_path / "cat"
    create_catalogue(pcfg, root, "tri-crops")
    # the reference: the catalogue's detector run directly, the most confident accepted garment's first category
    models = BoundModels(read_card(root), root, "cpu")
    expected = {}
    for pid in ids:
        rgb = read_rgb(photos / f"{pid}.jpg")
        found = sorted(accepted_detections(models.detect([rgb])[0], (rgb.shape[1], rgb.shape[0]), 0.5),
                       key=lambda a: (-a[1].score, a[0]))
        names = [c for _, det, _ in found for c in models.categories_of(det.label)]
        expected[f"{pid}.jpg"] = names[0] if names else None
    assert sum(c is not None for c in expected.values()) >= len(ids) // 2   # the detector does name most
    calls = []
    real = detect_inference.detect_arrays
    monkeypatch.setattr(detect_inference, "detect_arrays", lambda *a, **k: calls.append(len(a[2])) or real(*a, **k))
    report = add_products(root, photos)
    assert sum(calls) == len(ids)   # named and cropped by one detection per photo
    rows = {r["source"]: r for r in photo_rows(root)}
    for name, category in expected.items():
        if category is None:
            assert any(u["photo"] == name and "no garment" in u["reason"] for u in report.unreadable)
        else:
            assert rows[name]["category"] == category and rows[name]["product"] == name[:-4]
    assert report.added == sum(c is not None for c in expected.values())


def test_folders_that_cannot_be_read_are_clear_errors(pcfg, tmp_path):
    categories = ["bags", "tops"]
    mixed = tmp_path / "mixed"
    _place(pcfg, mixed / "bags" / "P1", 1)
    _place(pcfg, mixed / "summer", 1)
    with pytest.raises(InputError, match="mixes category folders.*'summer'"):
        read_photo_folder(mixed, categories, lambda p: ("bags", ""))
    flat = tmp_path / "flatonly"
    _place(pcfg, flat, 1)
    with pytest.raises(InputError, match="no detector"):
        read_photo_folder(flat, categories, None)
    (tmp_path / "empty" / "bags").mkdir(parents=True)
    with pytest.raises(InputError, match="no photos"):
        read_photo_folder(tmp_path / "empty", categories, None)
    with pytest.raises(MissingFileError):
        read_photo_folder(tmp_path / "absent", categories, None)
    outside = tmp_path / "outside"
    _place(pcfg, outside / "P9", 2)
    linked = tmp_path / "linked" / "bags"
    linked.mkdir(parents=True)
    os.symlink(outside / "P9", linked / "P9")   # a symbolic link to a folder is not followed
    _place(pcfg, linked / "P1", 1)
    lines, _ = read_photo_folder(tmp_path / "linked", categories, None)
    assert [ln.product for ln in lines] == ["P1"]
    # a catalogue without a detector reads only folders by category
    root = tmp_path / "whole"
    from tests.retrieval import tiny_foundation as tiny

    create_catalogue(pcfg, root, None, foundation=FoundationChoice("open_clip:t", tiny.save_open_clip(
        tmp_path / "oc"), crops="whole"))
    with pytest.raises(InputError, match="no detector"):
        add_products(root, flat)
