"""detret.detect.inference: the bf16 bottom-up against the fp32 one, on a real Detectron2 model."""
import numpy as np
import torch

from detret.detect.config import build_detector_cfg, detector_identity
from detret.detect.inference import Bf16BottomUp, load_detector


def _cfg(*opts):
    return build_detector_cfg("mask_rcnn_R_18_FPN_synth_cpu.yaml", opts=["MODEL.WEIGHTS", "", *opts], device="cpu")


def _weights(tmp_path, cfg):
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.modeling import build_model

    torch.manual_seed(0)
    model = build_model(cfg)
    path = tmp_path / "w.pth"
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("w")
    return str(path)


def test_bf16_bottom_up_matches_fp32_features_and_runs_the_whole_model(tmp_path):
    fp32_cfg = _cfg()
    weights = _weights(tmp_path, fp32_cfg)
    fp32 = load_detector(fp32_cfg, weights, torch.device("cpu"))
    bf16 = load_detector(_cfg("DETRET.DETECT.PRECISION", "bf16"), weights, torch.device("cpu"))
    assert isinstance(bf16.backbone.bottom_up, Bf16BottomUp) and not isinstance(fp32.backbone.bottom_up, Bf16BottomUp)
    # the same weights reached the wrapped network
    for (name, a), (_, b) in zip(fp32.backbone.bottom_up.named_parameters(),
                                 bf16.backbone.bottom_up.inner.named_parameters()):
        assert torch.equal(a, b), name
    assert bf16.backbone.bottom_up.size_divisibility == fp32.backbone.bottom_up.size_divisibility
    x = torch.rand(2, 3, 128, 160) * 255 - 128
    with torch.inference_mode():
        ref, out = fp32.backbone.bottom_up(x), bf16.backbone.bottom_up(x)
    assert set(ref) == set(out)
    for name in ref:
        assert out[name].dtype == torch.float32 and out[name].shape == ref[name].shape
        rel = (out[name] - ref[name]).norm() / ref[name].norm()
        assert rel < 0.03, (name, float(rel))  # bf16 keeps 8 significant bits (u = 0.4%) through ~18 layers
    image = {"image": torch.randint(0, 255, (3, 120, 150), dtype=torch.uint8), "height": 120, "width": 150}
    with torch.inference_mode():
        inst = bf16([image])[0]["instances"]
    assert inst.pred_boxes.tensor.dtype == torch.float32 and torch.isfinite(inst.pred_boxes.tensor).all()


def test_precision_is_part_of_the_detect_artifacts_identity(tmp_path):
    fp32, bf16 = _cfg(), _cfg("DETRET.DETECT.PRECISION", "bf16")
    assert "PRECISION: fp32" in detector_identity(fp32) and "PRECISION: bf16" in detector_identity(bf16)
    assert "BATCH_SIZE: 0" in detector_identity(fp32)  # batching does not decide a detection


def test_unknown_precision_is_refused(tmp_path):
    import pytest

    with pytest.raises(ValueError, match="DETRET.DETECT.PRECISION 'fp16'"):
        _cfg("DETRET.DETECT.PRECISION", "fp16")


def _sample(i, h, w):
    return {"photo_id": i, "image": torch.zeros(3, h, w, dtype=torch.uint8), "height": h, "width": w}


def test_shape_batches_hold_one_padded_shape_each_and_lose_nothing():
    import random

    from detret.detect.inference import _padded_shape, shape_batches

    rng = random.Random(0)
    samples = []
    for i in range(200):
        if i % 17 == 0:
            samples.append({"photo_id": i, "error": "cannot decode"})
        else:
            samples.append(_sample(i, rng.choice([256, 250, 320, 300]), rng.choice([256, 320, 330, 512])))
    consumed = 0

    def source():
        nonlocal consumed
        for sample in samples:
            consumed += 1
            yield sample

    seen, most_waiting = [], 0
    for batch in shape_batches(source(), 4, 32, max_waiting=6):
        most_waiting = max(most_waiting, consumed - len(seen))  # read but not yet handed on, this batch included
        assert 1 <= len(batch) <= 4
        if "error" in batch[0]:
            assert len(batch) == 1
        else:
            assert len({_padded_shape(b["image"], 32) for b in batch}) == 1
        seen += [b["photo_id"] for b in batch]
    assert sorted(seen) == list(range(200))
    assert most_waiting <= 6 + 1  # memory stays bounded whatever the mix of shapes
    assert _padded_shape(torch.zeros(3, 250, 330), 32) == (256, 352)
    assert _padded_shape(torch.zeros(3, 250, 330), 0) == (250, 330)


def test_batched_detection_of_mixed_shapes_equals_photo_by_photo(tmp_path):
    from PIL import Image

    from detret.data.categories import load_categories
    from detret.detect.inference import detect_photos

    rng = np.random.default_rng(0)
    items = []
    for i, (h, w) in enumerate([(300, 200), (200, 300), (300, 200), (240, 240), (200, 300), (300, 200)]):
        path = tmp_path / f"{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
        items.append((i, path))
    labels = load_categories().modanet

    def run(batch_size):
        cfg = _cfg("DETRET.DETECT.BATCH_SIZE", str(batch_size), "DETRET.DETECT.NUM_WORKERS", "0",
                   "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0")
        model = load_detector(cfg, weights, torch.device("cpu"))
        found = []
        assert sum(detect_photos(model, cfg, items, labels, torch.device("cpu"), found.extend)) == len(items)
        return {r.photo_id: r for r in found}

    weights = _weights(tmp_path, _cfg())
    one, four = run(1), run(4)
    assert sorted(one) == sorted(four) == list(range(len(items)))
    assert sum(len(r.detections) for r in one.values()) > 0
    for i in one:
        a, b = one[i].detections, four[i].detections
        assert len(a) == len(b), i
        for x, y in zip(a, b):
            assert x.label == y.label
            assert np.allclose(x.box_xyxy, y.box_xyxy, atol=1e-2) and abs(x.score - y.score) < 1e-4
