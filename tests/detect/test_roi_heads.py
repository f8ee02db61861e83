"""detret's ROI heads: objectness in [0, 1] from the proposals, class vectors summing to 1."""
import pytest
import torch

from detret.detect.config import build_detector_cfg


@pytest.fixture(scope="module")
def small_model():
    from detectron2.modeling import build_model

    torch.manual_seed(0)
    cfg = build_detector_cfg("mask_rcnn_R_18_FPN_synth_cpu.yaml",
                             ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "MODEL.MASK_ON", "True"])
    return build_model(cfg).eval()


def test_detections_carry_objectness_and_class_probs(small_model):
    image = torch.randint(0, 255, (3, 128, 96), dtype=torch.uint8)
    with torch.inference_mode():
        images = small_model.preprocess_image([{"image": image}])
        features = small_model.backbone(images.tensor)
        proposals, _ = small_model.proposal_generator(images, features, None)
        instances, _ = small_model.roi_heads(images, features, proposals, None)
    inst = instances[0]
    assert len(inst) > 0
    probs = inst.class_probs
    assert probs.shape == (len(inst), 14)
    assert torch.allclose(probs.sum(1), torch.ones(len(inst)), atol=1e-5)
    # the detection score is the probability of its predicted class
    assert torch.allclose(inst.scores, probs[torch.arange(len(inst)), inst.pred_classes])
    assert ((inst.objectness >= 0) & (inst.objectness <= 1)).all()
    # every objectness is the sigmoid of a proposal's logit (computed here a second way)
    from_proposals = torch.sigmoid(proposals[0].objectness_logits)
    assert all(torch.isclose(from_proposals, o).any() for o in inst.objectness)


def test_full_model_output_keeps_fields_after_rescaling(small_model):
    image = torch.randint(0, 255, (3, 100, 80), dtype=torch.uint8)
    with torch.inference_mode():
        out = small_model([{"image": image, "height": 200, "width": 160}])[0]["instances"]
    assert out.image_size == (200, 160)
    assert out.has("objectness") and out.has("class_probs") and out.has("pred_masks")


@pytest.mark.parametrize("config", ["mask_rcnn_R_50_FPN_modanet.yaml", "mask_rcnn_X_101_32x8d_FPN_modanet.yaml",
                                    "zoo:COCO-Detection/faster_rcnn_R_50_C4_1x.yaml"])
def test_paper_configs_build_and_run_on_cpu(config):
    from detectron2.modeling import build_model

    cfg = build_detector_cfg(config, ["MODEL.WEIGHTS", ""])
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 13 and cfg.MODEL.ROI_HEADS.NAME.startswith("Objectness")
    model = build_model(cfg).eval()
    with torch.inference_mode():
        out = model([{"image": torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8), "height": 64, "width": 64}])
    inst = out[0]["instances"]
    assert inst.has("objectness") and inst.has("class_probs")


def test_config_errors():
    with pytest.raises(FileNotFoundError, match="has: .*mask_rcnn_R_50_FPN_modanet.yaml"):
        build_detector_cfg("no_such.yaml")
    with pytest.raises(ValueError, match="KEY VALUE"):
        build_detector_cfg("mask_rcnn_R_18_FPN_synth_cpu.yaml", ["SOLVER.MAX_ITER"])
    with pytest.raises(ValueError, match="NO_SUCH"):
        build_detector_cfg("mask_rcnn_R_18_FPN_synth_cpu.yaml", ["SOLVER.NO_SUCH", "1"])
    with pytest.raises(ValueError, match="POLICY"):
        build_detector_cfg("mask_rcnn_R_18_FPN_synth_cpu.yaml", ["DETRET.CROP.POLICY", "best"])


def test_unreachable_weights_fail_early_with_advice(tmp_path):
    from detret.detect.config import WeightsUnavailable, check_weights_available

    cfg = build_detector_cfg("mask_rcnn_R_18_FPN_synth_cpu.yaml", weights=str(tmp_path / "missing.pkl"))
    with pytest.raises(WeightsUnavailable, match="missing.pkl"):
        check_weights_available(cfg)
    cfg = build_detector_cfg("mask_rcnn_R_18_FPN_synth_cpu.yaml", weights="http://127.0.0.1:9/R-50.pkl")
    with pytest.raises(WeightsUnavailable, match="detector.weights="):
        check_weights_available(cfg)
    assert check_weights_available(build_detector_cfg("mask_rcnn_R_18_FPN_synth_cpu.yaml")) is None
