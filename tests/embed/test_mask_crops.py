"""Mask crops through embedding, training and a catalogue: descriptors of mask crops equal the model's
descriptors of crops cut out by hand (background filled, then the box), with a tiny foundation model and a
retrieval network; a catalogue bound to mask crops cuts its photos and its queries by the detector's masks."""
import json

import numpy as np
import pytest
import torch

from detret.detect.crops import Detection
from detret.detect.masks import MASK_FILLS, CropShape, encode_mask
from detret.embed.describer import Describer, DescriptorSpec
from detret.embed.inference import describe_crops
from detret.retrieval.foundation import FoundationSpec, load_foundation, materialise
from detret.retrieval.foundation.sources import locate
from tests.retrieval import tiny_foundation as tiny


def _ellipse(h, w):
    yy, xx = np.mgrid[:h, :w]
    return ((yy - h / 2) / (h / 3)) ** 2 + ((xx - w / 2) / (w / 3)) ** 2 <= 1.0


def _by_hand(rgb, mask, box, fill):
    """The background filled by hand, then the box's pixels (floor of the start, ceiling of the end)."""
    out = rgb.copy()
    out[~mask] = MASK_FILLS[fill]
    x0, y0 = (int(np.floor(v)) for v in box[:2])
    x1, y1 = (int(np.ceil(v)) for v in box[2:])
    return out[y0:y1, x0:x1]


def test_a_describer_cuts_mask_crops_as_by_hand(tmp_path):
    spec_ = FoundationSpec.parse("hf:tiny")
    folder = materialise(spec_, locate(spec_, tiny.save_hf_dinov2(tmp_path / "dino")), tmp_path / "kept")
    rng = np.random.default_rng(0)
    photos = [rng.integers(0, 256, (60, 48, 3), dtype=np.uint8) for _ in range(3)]
    masks = [_ellipse(60, 48), None, _ellipse(60, 48)]
    boxes = [(4.0, 6.0, 40.0, 50.0), (0.0, 0.0, 48.0, 60.0), None]
    for fill in MASK_FILLS:
        spec = DescriptorSpec([{"name": "t", "checkpoint": str(folder.path), "sha256": folder.identity}],
                              crop=CropShape("mask", fill))
        ours = Describer(spec, "cpu").describe(photos, boxes, "query",
                                               [None if m is None else encode_mask(m) for m in masks])
        crops = [_by_hand(photos[0], masks[0], boxes[0], fill), photos[1],
                 _by_hand(photos[2], masks[2], (0, 0, 48, 60), fill)]
        reference = describe_crops([load_foundation(folder.path)], crops, [1.0], "cpu").numpy()
        np.testing.assert_allclose(ours, reference, atol=1e-6)
    assert spec.to_json()["crop"] == "mask" and DescriptorSpec.from_json(spec.to_json()).crop == CropShape("mask", fill)
    plain = DescriptorSpec([{"name": "t", "checkpoint": "x", "sha256": "y"}])
    assert "crop" not in plain.to_json() and "crop" not in plain.identity()   # box crops: as before


def test_training_reads_mask_crops(tmp_path):
    from PIL import Image

    from detret.retrieval.data import CropItem, CropReader
    from detret.retrieval.preprocess import normalise, resize_to_input, to_tensor

    rgb = np.random.default_rng(3).integers(0, 256, (64, 40, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "p.png")
    mask = _ellipse(64, 40)
    item = CropItem(1, tmp_path / "p.png", (2.0, 4.0, 38.0, 60.0), "tops", ("tops", 1), "shop",
                    mask=encode_mask(mask))
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.2, 0.2]
    got = CropReader(32, "longest", mean, std, CropShape("mask", "mean"))(item)
    expected = normalise(resize_to_input(to_tensor(_by_hand(rgb, mask, item.box_xyxy, "mean")), 32, "longest"),
                         mean, std)
    assert torch.equal(got, expected)
    assert not torch.equal(CropReader(32, "longest", mean, std)(item), expected)   # box crops ignore the mask


def test_training_on_mask_crops_needs_the_masks(demo_quick, tmp_path):
    """The demo detects the training street photos with masks (for ap-masks): their masks are read; a run
    without those detections is refused, naming the command that makes them."""
    from detret.errors import DetretError
    from detret.retrieval.data import training_masks
    from detret.runs.layout import RunLayout

    _, result = demo_quick
    masks = training_masks(RunLayout(result["run_dir"]))
    assert masks["shop"] and masks["street"]   # (the quick detector finds little: the values may be None)
    with pytest.raises(DetretError, match="detect --split shop"):
        training_masks(RunLayout(tmp_path / "empty-run"))


def test_a_catalogue_of_mask_crops_cuts_photos_and_queries_by_the_detectors_masks(demo_quick, tmp_path,
                                                                                     monkeypatch):
    """Bound to a foundation model with --crop mask and a detector with a mask head; the detector is stubbed
    (the quick demo's detects nothing): each photo's one garment with a hand-made elliptic mask."""
    from fastapi.testclient import TestClient

    from detret.catalogue.add import add_products
    from detret.catalogue.binding import read_card
    from detret.catalogue.create import FoundationChoice, create_catalogue
    from detret.config.pipeline import load_pipeline_config
    from detret.data.images import read_rgb
    from detret.detect import inference as detect_inference
    from detret.serve.app import create_app
    from tests.catalogue.helpers import demo_images, index_vectors, photo_rows, write_products_csv

    _, result = demo_quick
    pcfg = load_pipeline_config(result["config"], ["device=cpu", "detector.opts=[MODEL.MASK_ON,True]"])
    saved = tiny.save_open_clip(tmp_path / "clip")
    root = tmp_path / "cat"
    create_catalogue(pcfg, root, None, foundation=FoundationChoice("open_clip:tiny", saved, crop=CropShape("mask")))
    card = read_card(root)
    assert card.descriptor.crop == CropShape("mask") and card.detector["masks"]
    images = demo_images(pcfg)
    ids = sorted(int(p.stem) for p in images.glob("*.jpg"))[:4]
    lines = [f"{images / f'{pid:09d}.jpg'},P{pid},tops" for pid in ids]
    csv = write_products_csv(tmp_path / "list", lines, "photo,product,category")
    calls = []

    def detector(model, cfg, arrays, labels, device):
        calls.append(bool(cfg.MODEL.MASK_ON and cfg.DETRET.DETECT.MASKS))
        out = []
        for a in arrays:
            h, w = a.shape[:2]
            out.append([Detection((w * .1, h * .1, w * .9, h * .9), "top", 0.9, 0.9, encode_mask(_ellipse(h, w)))])
        return out

    monkeypatch.setattr(detect_inference, "detect_arrays", detector)
    assert add_products(root, csv).added == 4 and all(calls)
    stored = index_vectors(root, "tops")
    rows = {r["photo_id"]: r for r in photo_rows(root)}
    crops = []
    for pid in sorted(stored):
        rgb = read_rgb(root / rows[pid]["file"])
        crops.append(_by_hand(rgb, _ellipse(*rgb.shape[:2]), json.loads(rows[pid]["box_xyxy"]), "white"))
        assert rows[pid]["rule"] == "detection"
    reference = describe_crops([load_foundation(root / card.descriptor.models[0]["checkpoint"])], crops, [1.0],
                               "cpu").numpy()
    np.testing.assert_allclose(np.stack([stored[i] for i in sorted(stored)]), reference, atol=2e-5)
    with TestClient(create_app(root)) as client:   # a query is cut out the same way: a stored photo finds itself
        photo = (images / f"{ids[0]:09d}.jpg").read_bytes()
        hit = client.post("/api/search", files={"photo": ("p.jpg", photo, "image/jpeg")},
                          data={"category": "tops", "k": "1"}).json()["garments"][0]["results"][0]
        assert hit["product"] == f"P{ids[0]}" and hit["score"] == pytest.approx(1.0, abs=1e-4)
