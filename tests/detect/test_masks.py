"""Mask crops: masks run-length encoded as pycocotools does, the background filled by hand-checked rules, the
crop's mask chosen as the policy chose its detection (shop) or by overlap with the box (street), and the
masks a real Mask R-CNN records equal to what Detectron2's own predictor gives."""
import numpy as np
import pytest
import torch

from detret.detect.crops import Crop, Detection
from detret.detect.masks import (MASK_FILLS, CropShape, apply_mask, decode_mask, encode_mask,
                                 matching_detection)
from detret.errors import InputError


def _ellipse(h, w, cy, cx, ry, rx):
    yy, xx = np.mgrid[:h, :w]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def test_masks_round_trip_as_pycocotools_encodes_them():
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(0)
    for h, w in ((37, 53), (120, 80), (1, 1)):
        mask = rng.random((h, w)) > 0.6
        rle = encode_mask(mask)
        assert rle["size"] == [h, w] and isinstance(rle["counts"], str)
        assert np.array_equal(decode_mask(rle), mask)
        reference = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        assert reference["counts"].decode() == rle["counts"]
        assert int(mask_utils.area(reference)) == int(mask.sum())
    with pytest.raises(InputError, match="run-length"):
        decode_mask({"size": [2, 2]})


def test_the_background_is_filled_and_the_garment_kept():
    rgb = np.random.default_rng(1).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    mask = _ellipse(40, 60, 20, 30, 12, 20)
    for fill, colour in MASK_FILLS.items():
        out = apply_mask(rgb, encode_mask(mask), fill)
        assert np.array_equal(out[mask], rgb[mask]) and (out[~mask] == np.array(colour, np.uint8)).all()
    assert apply_mask(rgb, None) is rgb
    with pytest.raises(InputError, match="a mask of 10x10 px for a photo of 60x40"):
        apply_mask(rgb, encode_mask(np.ones((10, 10), bool)))
    with pytest.raises(InputError, match="mask fill 'grey'"):
        apply_mask(rgb, encode_mask(mask), "grey")
    cut = CropShape("mask").cut(rgb, (10.0, 5.0, 50.0, 35.0), encode_mask(mask))
    expected = rgb.copy()
    expected[~mask] = 255
    assert np.array_equal(cut, expected[5:35, 10:50])
    assert np.array_equal(CropShape("box").cut(rgb, (10.0, 5.0, 50.0, 35.0), encode_mask(mask)), rgb[5:35, 10:50])


def test_a_street_box_takes_the_mask_of_its_best_matching_detection():
    from detret.detect.stage import crop_mask

    m = [encode_mask(_ellipse(100, 100, 50, 50, r, r)) for r in (10, 20, 30)]
    dets = [Detection((0, 0, 40, 40), "top", 0.9, 0.9, m[0]),        # IoU with the box 0.64^2 ... (by hand below)
            Detection((10, 10, 50, 50), "top", 0.8, 0.9, m[1]),      # the box itself: IoU 1
            Detection((10, 10, 50, 50), "bag", 0.99, 0.9, m[2]),     # another label
            Detection((10, 10, 50, 50), "top", 0.7, 0.9)]            # no mask
    box = (10.0, 10.0, 50.0, 50.0)
    assert matching_detection(dets, box, ["top"]) == 1
    assert matching_detection(dets, box, ["skirt"]) is None
    # IoU of (0,0,40,40) with (10,10,50,50): 900 / (1600 + 1600 - 900) = 0.39 < 0.5
    assert matching_detection(dets[:1], box, ["top"]) is None
    assert crop_mask(dets, Crop(box, "ground_truth", None), ["top"]) == m[1]
    assert crop_mask(dets, Crop((0, 0, 40, 40), "detection", 0), ["top"]) == m[0]   # the policy's detection
    assert crop_mask(dets, Crop((0, 0, 100, 100), "fallback", None), ["top"]) is None


def test_a_mask_rcnn_records_the_masks_detectron2_predicts(tmp_path):
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.engine import DefaultPredictor
    from detectron2.modeling import build_model
    from PIL import Image

    from detret.data.categories import load_categories
    from detret.detect.config import build_detector_cfg
    from detret.detect.inference import detect_photos, load_detector

    cfg = build_detector_cfg("mask_rcnn_R_18_FPN_synth_cpu.yaml", ["MODEL.WEIGHTS", "", "MODEL.MASK_ON", "True",
                             "DETRET.DETECT.MASKS", "True", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
                             "DETRET.DETECT.NUM_WORKERS", "0", "TEST.DETECTIONS_PER_IMAGE", "8"], device="cpu")
    torch.manual_seed(0)
    DetectionCheckpointer(build_model(cfg), save_dir=str(tmp_path)).save("w")
    weights = str(tmp_path / "w.pth")
    rgb = np.random.default_rng(2).integers(0, 256, (300, 200, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "p.png")
    found = []
    model = load_detector(cfg, weights, torch.device("cpu"))
    list(detect_photos(model, cfg, [(0, tmp_path / "p.png")], load_categories().modanet, torch.device("cpu"),
                       found.extend))
    dets = found[0].detections
    assert dets and all(d.mask is not None for d in dets)
    reference_cfg = cfg.clone()
    reference_cfg.defrost()
    reference_cfg.MODEL.WEIGHTS = weights
    instances = DefaultPredictor(reference_cfg)(rgb[:, :, ::-1])["instances"]   # BGR, as cv2 reads photos
    assert len(instances) == len(dets)
    for d, box, mask in zip(dets, instances.pred_boxes.tensor.tolist(), instances.pred_masks.numpy()):
        assert np.allclose(d.box_xyxy, box, atol=1e-2)
        assert np.array_equal(decode_mask(d.mask), mask)
    no_masks = build_detector_cfg("mask_rcnn_R_18_FPN_synth_cpu.yaml", ["MODEL.WEIGHTS", ""], device="cpu")
    with pytest.raises(InputError, match="MODEL.MASK_ON is False"):
        build_detector_cfg("mask_rcnn_R_18_FPN_synth_cpu.yaml", ["DETRET.DETECT.MASKS", "True"], device="cpu")
    from detret.detect.config import detector_identity

    assert "MASKS" not in detector_identity(no_masks) and "MASKS: true" in detector_identity(cfg)
