"""The synthetic dataset: both published formats, checked with pycocotools and plain json."""
import hashlib
import json
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from detret.data.categories import load_categories
from detret.data.synth.generate import SynthConfig, generate
from detret.runs.stage import stage_status
from tests.helpers import SYNTH_SMALL as SMALL

CATS = load_categories()


@pytest.fixture(scope="module")
def synth(synth_small):
    out, cfg, summary = synth_small
    assert cfg == SMALL
    return out, summary


def _tree_digest(root: Path):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "manifest.json"}


def test_modanet_loads_with_pycocotools(synth):
    out, summary = synth
    coco = COCO(str(out / "modanet/annotations/modanet2018_instances_train.json"))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(CATS.modanet)
    assert sorted(coco.getCatIds()) == list(range(1, 14))
    assert len(coco.getImgIds()) == SMALL.n_modanet_train
    anns = coco.loadAnns(coco.getAnnIds())
    assert len(anns) == summary["modanet"]["train"]["annotations"] > 3 * SMALL.n_modanet_train
    for img in coco.loadImgs(coco.getImgIds()):
        path = out / "modanet/images" / img["file_name"]
        assert img["file_name"] == f"{img['id']:07d}.jpg"
        assert cv2.imread(str(path)).shape == (img["height"], img["width"], 3)
    for ann in anns:
        img = coco.imgs[ann["image_id"]]
        x, y, w, h = ann["bbox"]
        assert w > 0 and h > 0 and x >= 0 and y >= 0
        assert x + w <= img["width"] and y + h <= img["height"]
        mask = coco.annToMask(ann)
        ys, xs = np.nonzero(mask)
        assert len(xs) > 0
        # the polygons lie inside their box (one pixel of rounding allowed)
        assert xs.min() >= x - 1 and xs.max() <= x + w + 1 and ys.min() >= y - 1 and ys.max() <= y + h + 1
        # COCO's area of the rasterised polygons agrees with the recorded area
        assert abs(int(mask.sum()) - ann["area"]) <= 0.25 * ann["area"] + 30
    labels_present = {coco.cats[a["category_id"]]["name"] for a in anns}
    assert {"top", "footwear", "pants"} <= labels_present


def test_modanet_val_has_images_and_no_annotations(synth):
    out, _ = synth
    doc = json.loads((out / "modanet/annotations/modanet2018_instances_val.json").read_text())
    assert len(doc["images"]) == SMALL.n_modanet_val and doc["annotations"] == []


def test_street2shop_tree(synth):
    out, summary = synth
    meta = out / "street2shop/meta/json"
    gallery_products = defaultdict(set)
    split_products = {"train": set(), "test": set()}
    split_photos = {"train": set(), "test": set()}
    photo_category = defaultdict(set)
    shop_photos = set()
    for cat in CATS.street2shop:
        retrieval = json.loads((meta / f"retrieval_{cat}.json").read_text())
        assert retrieval and all(set(r) == {"photo", "product"} for r in retrieval)
        for r in retrieval:
            gallery_products[cat].add(r["product"])
            shop_photos.add(r["photo"])
        for split in ("train", "test"):
            pairs = json.loads((meta / f"{split}_pairs_{cat}.json").read_text())
            assert len(pairs) == summary["street2shop"][cat][f"{split}_pairs"]
            for p in pairs:
                assert set(p) == {"photo", "product", "bbox"}
                assert set(p["bbox"]) == {"left", "top", "width", "height"}
                assert p["product"] in gallery_products[cat], "every queried product has shop photos"
                split_products[split].add(p["product"])
                split_photos[split].add(p["photo"])
                photo_category[p["photo"]].add(cat)
                img = cv2.imread(str(out / "street2shop/images" / f"{p['photo']:09d}.jpg"))
                assert img is not None
                b = p["bbox"]
                assert b["width"] > 0 and b["height"] > 0
                assert b["left"] >= 0 and b["top"] >= 0
                assert b["left"] + b["width"] <= img.shape[1] + 1 and b["top"] + b["height"] <= img.shape[0] + 1
    assert split_products["train"] and split_products["test"]
    assert not split_products["train"] & split_products["test"]
    assert not split_photos["train"] & split_photos["test"]
    assert not shop_photos & (split_photos["train"] | split_photos["test"])
    for photo in shop_photos:
        assert (out / "street2shop/images" / f"{photo:09d}.jpg").is_file()
    # every category has test queries and distractor products in its gallery
    for cat in CATS.street2shop:
        assert summary["street2shop"][cat]["test_pairs"] > 0
    all_queried = split_products["train"] | split_products["test"]
    assert any(gallery_products[c] - all_queried for c in CATS.street2shop)


def test_street_garments_are_smaller_than_in_shop_photos(synth):
    """The domain gap the pipeline exists for: street items are small, shop items large."""
    out, _ = synth
    meta = out / "street2shop/meta/json"
    street_fracs = []
    for cat in CATS.street2shop:
        for p in json.loads((meta / f"test_pairs_{cat}.json").read_text()):
            b = p["bbox"]
            street_fracs.append(b["width"] * b["height"] / (SMALL.street_width_px * SMALL.street_height_px))
    assert np.median(street_fracs) < 0.1


def test_same_seed_identical_files_other_seed_differs(synth, tmp_path):
    out, _ = synth
    again = tmp_path / "again"
    generate(SMALL, again)
    assert _tree_digest(again) == _tree_digest(out)
    other = tmp_path / "other"
    generate(SynthConfig(**{**SMALL.__dict__, "seed": 4}), other)
    a, b = _tree_digest(other), _tree_digest(out)
    assert a["street2shop/meta/json/retrieval_bags.json"] != b["street2shop/meta/json/retrieval_bags.json"] or \
        a["modanet/images/0000001.jpg"] != b["modanet/images/0000001.jpg"]


def test_manifest_done_reused_and_stale_on_edit(synth, tmp_path):
    out, summary = synth
    assert stage_status(out).state == "done"
    assert generate(SMALL, out) == summary  # reused, not regenerated
    copy = tmp_path / "copy"
    generate(SMALL, copy)
    (copy / "street2shop/meta/json/test_pairs_bags.json").write_text("[]\n")
    status = stage_status(copy)
    assert status.state == "stale" and any("street2shop_json" in r for r in status.reasons)


def test_shop_boxes_are_where_the_generator_drew_each_product(synth_small, tmp_path):
    """shop_boxes.json: one box per shop photo inside the photo; drawing a photo again gives the same box
    and the same JPEG bytes as the files on disk."""
    from detret.data.categories import load_categories
    from detret.data.shop_boxes import read_shop_boxes
    from detret.data.synth.generate import (
        _encode_jpeg,
        make_catalogue,
        render_shop_photo,
        shop_jobs,
    )

    out, cfg, _ = synth_small
    boxes = read_shop_boxes(out / "street2shop")
    products = make_catalogue(cfg, load_categories().street2shop)
    jobs = shop_jobs(cfg, products)
    assert len(boxes) == len(jobs)
    for p, photo_id in jobs[:5]:
        img, record = render_shop_photo(cfg, p, photo_id)
        box = record["box_xyxy"]
        stored = (out / "street2shop" / "images" / f"{photo_id:09d}.jpg").read_bytes()
        assert stored == _encode_jpeg(img, cfg.jpeg_quality)
        (x0, y0, x1, y1), *pieces = boxes[(p.category, photo_id)]
        assert tuple(box) == (x0, y0, x1, y1)
        assert 0 <= x0 < x1 <= img.shape[1] + 1 and 0 <= y0 < y1 <= img.shape[0] + 1
        for px0, py0, px1, py1 in pieces:  # inside the whole product's box
            assert x0 <= px0 < px1 <= x1 and y0 <= py0 < py1 <= y1
    # a pair of shoes: the pair's box and each shoe's; any other product: its box alone
    assert {cat: len(b) for (cat, _), b in boxes.items()} == {cat: 3 if cat == "footwear" else 1
                                                              for cat, _ in boxes}
    assert read_shop_boxes(tmp_path) is None  # real data has no such file


def test_modanet_style_photos_are_street_or_catalogue_photos_of_any_label():
    """modanet_catalogue_prob 1: one garment of a drawn label (a pair for shoes) on a plain background when
    flat, over 60 photos every one of the 13 labels; 0: street photos, a dressed figure amid clutter."""
    from dataclasses import replace

    from detret.data.synth.generate import _STREAM_MODANET, _rng, modanet_style_photo

    labels = tuple(CATS.modanet)
    flat = replace(SMALL, modanet_catalogue_prob=1.0, shop_on_figure_prob=0.0)
    seen = set()
    for k in range(60):
        img, instances = modanet_style_photo(flat, _rng(flat, _STREAM_MODANET, k), labels, (384, 256))
        names = {i.label for i in instances}
        assert len(names) == 1 and len(instances) == (2 if names <= {"footwear", "boots"} else 1)
        corners = np.concatenate([img[:8, :8].reshape(-1, 3), img[:8, -8:].reshape(-1, 3)])
        assert corners.std(0).max() < 12  # plain background (a flat lay is rotated by at most 6 degrees)
        seen |= names
    assert seen == set(labels)
    street = replace(SMALL, modanet_catalogue_prob=0.0)
    for k in range(5):
        img, instances = modanet_style_photo(street, _rng(street, _STREAM_MODANET, k), labels, (384, 256))
        assert len({i.label for i in instances}) >= 2  # a dress or a top and a bottom, and shoes
        assert img.reshape(-1, 3).std(0).max() > 30  # clutter
