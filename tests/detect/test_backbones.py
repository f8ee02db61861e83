"""The basic-block ResNet-FPN of any width and depth (detret.detect.backbones), checked against Detectron2's
own R18, and the detector's optimizer choice (DETRET.SOLVER.OPTIMIZER)."""
import pytest
import torch

from detret.detect.config import build_detector_cfg, detector_identity

BASIC = ["MODEL.BACKBONE.NAME", "build_basic_resnet_fpn_backbone"]


def _backbone(opts):
    from detectron2.modeling import build_backbone

    torch.manual_seed(0)
    return build_backbone(build_detector_cfg("mask_rcnn_R_18_FPN_synth_cpu.yaml", opts)).eval()


def test_at_r18_widths_it_is_detectron2s_r18():
    """Blocks [2, 2, 2, 2] at widths 64/64: the same modules, parameter shapes and, from the same seed, the same
    features as Detectron2's build_resnet_fpn_backbone with DEPTH 18."""
    widths = ["MODEL.RESNETS.STEM_OUT_CHANNELS", "64", "MODEL.RESNETS.RES2_OUT_CHANNELS", "64"]
    ours = _backbone(BASIC + widths + ["DETRET.RESNET.BLOCKS_PER_STAGE", "[2, 2, 2, 2]"])
    theirs = _backbone(["MODEL.BACKBONE.NAME", "build_resnet_fpn_backbone", "MODEL.RESNETS.DEPTH", "18"] + widths)
    assert [(n, p.shape) for n, p in ours.named_parameters()] == \
        [(n, p.shape) for n, p in theirs.named_parameters()]
    image = torch.rand(1, 3, 128, 96) * 255
    with torch.inference_mode():
        a, b = ours(image), theirs(image)
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k]) for k in a)


def test_width_and_blocks_follow_the_config():
    model = _backbone(BASIC + ["MODEL.RESNETS.STEM_OUT_CHANNELS", "16", "MODEL.RESNETS.RES2_OUT_CHANNELS", "16",
                               "DETRET.RESNET.BLOCKS_PER_STAGE", "[1, 1, 2, 1]", "MODEL.RESNETS.NORM", "BN"])
    bottom_up = model.bottom_up
    assert [len(getattr(bottom_up, f"res{i}")) for i in range(2, 6)] == [1, 1, 2, 1]
    assert bottom_up.stem.conv1.out_channels == 16
    assert [bottom_up._out_feature_channels[f"res{i}"] for i in range(2, 6)] == [16, 32, 64, 128]
    with torch.inference_mode():
        out = model(torch.rand(1, 3, 128, 96) * 255)
    # FPN levels p2-p6 at strides 4-64, each with the FPN's channels
    assert {k: tuple(v.shape[2:]) for k, v in out.items()} == \
        {"p2": (32, 24), "p3": (16, 12), "p4": (8, 6), "p5": (4, 3), "p6": (2, 2)}
    assert {v.shape[1] for v in out.values()} == {64}


def test_blocks_per_stage_is_checked_where_it_is_read():
    from detret.errors import InputError

    with pytest.raises(InputError, match=r"BLOCKS_PER_STAGE \[2, 2, 2\]: four stages"):
        _backbone(BASIC + ["DETRET.RESNET.BLOCKS_PER_STAGE", "[2, 2, 2]"])


def test_adamw_takes_detectron2s_parameter_groups():
    """AdamW over the parameter groups of Detectron2's SGD: the same parameters, learning rates and weight
    decays (none on norms when WEIGHT_DECAY_NORM is 0); SGD stays Detectron2's."""
    from detectron2.modeling import build_model

    from detret.detect.train import DetectorTrainer

    opts = ["SOLVER.WEIGHT_DECAY_NORM", "0.0", "SOLVER.BASE_LR", "0.003"]
    sgd_cfg = build_detector_cfg("mask_rcnn_R_18_FPN_synth_cpu.yaml", opts + ["DETRET.SOLVER.OPTIMIZER", "SGD"])
    adamw_cfg = build_detector_cfg("mask_rcnn_R_18_FPN_synth_cpu.yaml", opts + ["DETRET.SOLVER.OPTIMIZER", "AdamW"])
    model = build_model(sgd_cfg)
    sgd, adamw = DetectorTrainer.build_optimizer(sgd_cfg, model), DetectorTrainer.build_optimizer(adamw_cfg, model)
    assert isinstance(sgd, torch.optim.SGD) and isinstance(adamw, torch.optim.AdamW)

    def groups(opt):
        return sorted((tuple(sorted(id(p) for p in g["params"])), g["lr"], g["weight_decay"])
                      for g in opt.param_groups)
    assert groups(adamw) == groups(sgd)
    norms = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.GroupNorm)}
    assert norms and all(g["weight_decay"] == 0.0 for g in adamw.param_groups
                         if any(id(p) in norms for p in g["params"]))
    assert {g["lr"] for g in adamw.param_groups} == {0.003}


def test_optimizer_choice_is_checked_and_part_of_the_identity():
    with pytest.raises(ValueError, match="DETRET.SOLVER.OPTIMIZER 'Adam' is not one of SGD, AdamW"):
        build_detector_cfg("mask_rcnn_R_18_FPN_synth_cpu.yaml", ["DETRET.SOLVER.OPTIMIZER", "Adam"])
    sgd = detector_identity(build_detector_cfg("mask_rcnn_R_50_FPN_modanet.yaml", ["MODEL.WEIGHTS", ""]))
    assert "OPTIMIZER: SGD" in sgd  # one fingerprint version: every key, the defaults included
    assert "BLOCKS_PER_STAGE" not in sgd  # read by the basic-block backbone alone
    adamw = build_detector_cfg("mask_rcnn_R_18_FPN_synth_cpu.yaml", ["DETRET.SOLVER.OPTIMIZER", "AdamW"] + BASIC)
    assert "OPTIMIZER: AdamW" in detector_identity(adamw) and "BLOCKS_PER_STAGE" in detector_identity(adamw)
