"""`catalogue add CAT FOLDER`: a folder of photos by category and product, or flat (the detector names each
photo's category, each photo detected once); checked against the photos placed and against the detector
run directly."""
import os

import pytest

from detret.catalogue.add import add_products
from detret.catalogue.create import FoundationChoice, create_catalogue
from detret.catalogue.folder_import import read_photo_folder
from detret.config.pipeline import load_pipeline_config
from detret.detect import inference as detect_inference
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


# What the (stubbed) detector finds in the flat folder's photos, in order, and the category each must get:
# the most confident garment above objectness 0.5 names it; a photo with none is left out.
FLAT_DETECTIONS = [
    ([("bag", 0.9, 0.8), ("top", 0.95, 0.3)], "bags"),        # the top's objectness is below the threshold
    ([("top", 0.6, 0.9), ("skirt", 0.8, 0.7)], "skirts"),
    ([("boots", 0.7, 0.9)], "footwear"),                        # footwear -> {footwear, boots} in the map
    ([("top", 0.4, 0.2)], None),
    ([], None),
    ([("outer", 0.55, 0.51), ("belt", 0.5, 0.99)], "outerwear"),
]


def test_a_flat_folder_is_named_by_the_detector_each_photo_detected_once(pcfg, tmp_path, monkeypatch):
    from detret.detect.crops import Detection

    ids = [pid for _, _, pids in _same_product_photos(pcfg, 3) for pid in pids[:2]][:len(FLAT_DETECTIONS)]
    photos = tmp_path / "flat"
    by_size = {}
    for pid, (found, _) in zip(ids, FLAT_DETECTIONS):
        rgb = read_rgb(_place(pcfg, photos, pid))
        h, w = rgb.shape[:2]
        by_size[rgb.tobytes()] = [Detection((w * .1, h * .2, w * .8, h * .9), label, score, objectness)
                                  for label, score, objectness in found]
    calls = []

    def detector(model, cfg, arrays, labels, device):
        calls.append(len(arrays))
        return [by_size[a.tobytes()] for a in arrays]

    monkeypatch.setattr(detect_inference, "detect_arrays", detector)
    root = tmp_path / "cat"
    create_catalogue(pcfg, root, "tri-crops")
    report = add_products(root, photos)
    assert sum(calls) == len(ids)   # each photo detected once: to name its category and to crop it
    rows = {r["source"]: r for r in photo_rows(root)}
    for pid, (_, category) in zip(ids, FLAT_DETECTIONS):
        name = f"{pid}.jpg"
        if category is None:
            assert name not in rows
            assert any(u["photo"] == name and "no garment" in u["reason"] for u in report.unreadable)
        else:
            assert (rows[name]["category"], rows[name]["product"], rows[name]["rule"]) == (category, str(pid),
                                                                                           "detection")
    assert report.added == sum(c is not None for _, c in FLAT_DETECTIONS)


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
        tmp_path / "oc"), detector=False))
    with pytest.raises(InputError, match="no detector"):
        add_products(root, flat)


def test_a_folder_deeper_than_category_product_photo_is_refused(pcfg, tmp_path):
    _place(pcfg, tmp_path / "deep" / "bags" / "P1" / "angles", 1)
    with pytest.raises(InputError, match="a folder inside a product's folder"):
        read_photo_folder(tmp_path / "deep", ["bags"], None)
