"""detret.detect.inference: the bf16 bottom-up against the fp32 one, on a real Detectron2 model."""
import torch

from detret.detect.config import build_detector_cfg
from detret.detect.inference import Bf16BottomUp, load_detector
from detret.detect.stage import _hashed_cfg_text


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


def test_precision_is_part_of_the_detect_artifacts_identity_only_when_not_the_default(tmp_path):
    fp32, bf16 = _cfg(), _cfg("DETRET.DETECT.PRECISION", "bf16")
    assert "PRECISION" not in _hashed_cfg_text(fp32)  # artifacts from before the key stay valid
    assert "PRECISION: bf16" in _hashed_cfg_text(bf16)


def test_unknown_precision_is_refused(tmp_path):
    import pytest

    with pytest.raises(ValueError, match="DETRET.DETECT.PRECISION 'fp16'"):
        _cfg("DETRET.DETECT.PRECISION", "fp16")
