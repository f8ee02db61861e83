"""A ResNet of basic blocks at any width and depth under Detectron2's FPN: detectors small enough to train
on a CPU in minutes (``detectron_configs/*synth_cpu*``).

Detectron2's ``build_resnet_backbone`` builds basic-block ResNets only as R18 and R34 at their standard
widths (it asserts ``RES2_OUT_CHANNELS == 64``); this builder takes the blocks per stage from
``DETRET.RESNET.BLOCKS_PER_STAGE`` and the widths from ``MODEL.RESNETS.STEM_OUT_CHANNELS`` and
``RES2_OUT_CHANNELS`` (doubling at each stage), and is otherwise Detectron2's own stem, blocks, stages
and FPN (``MODEL.BACKBONE.NAME: build_basic_resnet_fpn_backbone``). ``BLOCKS_PER_STAGE [2, 2, 2, 2]`` at
widths 64/64 is R18 exactly.
"""
from __future__ import annotations

from detectron2.config import CfgNode
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import BACKBONE_REGISTRY, FPN
from detectron2.modeling.backbone.fpn import LastLevelMaxPool
from detectron2.modeling.backbone.resnet import BasicBlock, BasicStem, ResNet

from ..errors import InputError


def build_basic_resnet(cfg: CfgNode, input_shape: ShapeSpec) -> ResNet:
    """The bottom-up ResNet: Detectron2's stem, then stages res2-res5 of basic blocks (strides 1, 2, 2, 2)."""
    blocks = list(cfg.DETRET.RESNET.BLOCKS_PER_STAGE)
    if len(blocks) != 4 or any(int(n) < 1 for n in blocks):
        raise InputError(f"DETRET.RESNET.BLOCKS_PER_STAGE {blocks}: four stages (res2-res5) of at least one "
                         "block each")
    norm = cfg.MODEL.RESNETS.NORM
    stem = BasicStem(in_channels=input_shape.channels, out_channels=cfg.MODEL.RESNETS.STEM_OUT_CHANNELS,
                     norm=norm)
    in_channels, out_channels = cfg.MODEL.RESNETS.STEM_OUT_CHANNELS, cfg.MODEL.RESNETS.RES2_OUT_CHANNELS
    stages = []
    for idx, n in enumerate(int(b) for b in blocks):
        first_stride = 1 if idx == 0 else 2
        stages.append(ResNet.make_stage(block_class=BasicBlock, num_blocks=n,
                                        stride_per_block=[first_stride] + [1] * (n - 1),
                                        in_channels=in_channels, out_channels=out_channels, norm=norm))
        in_channels, out_channels = out_channels, out_channels * 2
    return ResNet(stem, stages, out_features=cfg.MODEL.RESNETS.OUT_FEATURES,
                  freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT)


@BACKBONE_REGISTRY.register()
def build_basic_resnet_fpn_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> FPN:
    """:func:`build_basic_resnet` under an FPN, as Detectron2's ``build_resnet_fpn_backbone`` builds it."""
    return FPN(bottom_up=build_basic_resnet(cfg, input_shape), in_features=cfg.MODEL.FPN.IN_FEATURES,
               out_channels=cfg.MODEL.FPN.OUT_CHANNELS, norm=cfg.MODEL.FPN.NORM, top_block=LastLevelMaxPool(),
               fuse_type=cfg.MODEL.FPN.FUSE_TYPE)


BACKBONE_NAME = build_basic_resnet_fpn_backbone.__name__  # MODEL.BACKBONE.NAME that selects it
