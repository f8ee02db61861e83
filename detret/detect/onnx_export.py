"""The detector as one ONNX graph: Detectron2's own Mask R-CNN traced whole, proposals, NMS and heads included.

The graph is Detectron2's ``GeneralizedRCNN.inference(do_postprocess=False)`` (with detret's objectness heads)
traced by Detectron2's ``TracingAdapter`` and written by torch's TorchScript-based ONNX exporter
(``torch.onnx.export(dynamo=False)``): Detectron2 marks the shape-dependent steps (anchors per feature map, the
per-level top-k, padding to the size divisibility, paste-free mask logits) so that a trace holds for any photo
size, and torchvision's ``nms`` and ``roi_align`` have ONNX forms (``NonMaxSuppression``, ``RoiAlign``). The
exporter based on ``torch.export`` (``dynamo=True``, which ``detret export`` uses for the descriptor networks)
cannot follow Detectron2's data-dependent shapes, hence the older exporter here.

Graph (``detector.onnx``)::

    image   uint8 [3, H, W]       the photo resized as DefaultPredictor resizes it, channels in INPUT.FORMAT
    boxes   float32 [N, 4]        x0, y0, x1, y1 in the *resized* photo's pixels (not clipped to the photo)
    scores  float32 [N]           probability of the predicted class
    classes int64 [N]             index into the detector's labels
    objectness float32 [N]        sigmoid of the RPN proposal's logit (Kucer & Murray's filter)
    masks   float32 [N, 1, M, M]  only with masks: each detection's mask probabilities in its box

What is left outside, in :mod:`.portable` (numpy and Pillow, no torch): the resize before, and Detectron2's
``detector_postprocess`` after (boxes scaled to the photo and clipped, empty ones dropped, masks pasted).
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import List, Tuple

import numpy as np
import torch
from detectron2.config import CfgNode

from ..errors import InputError
from ..runs.atomic import atomic_path
from .inference import load_detector, model_input

OPSET = 17   # RoiAlign's coordinate_transformation_mode (Detectron2's aligned ROIAlignV2) needs >= 16
OUTPUTS_BOXES = ("boxes", "scores", "classes", "objectness")
OUTPUTS_MASKS = OUTPUTS_BOXES + ("masks",)


class BatchSafeGroupNorm(torch.nn.Module):
    """``nn.GroupNorm`` whose ONNX form also holds for an empty batch. The exporter writes GroupNorm as a reshape to
    [N, G, -1], which ONNX Runtime cannot resolve when N is 0: a photo without detections sends no box to the mask
    head. Here the last size is computed from the input's shape instead of inferred."""

    def __init__(self, norm: torch.nn.GroupNorm) -> None:
        super().__init__()
        self.norm = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        groups = self.norm.num_groups
        y = x.reshape(n, groups, (c // groups) * h * w)
        mean = y.mean(dim=2, keepdim=True)
        var = (y - mean).pow(2).mean(dim=2, keepdim=True)
        y = ((y - mean) / torch.sqrt(var + self.norm.eps)).reshape(n, c, h, w)
        return y * self.norm.weight.view(1, -1, 1, 1) + self.norm.bias.view(1, -1, 1, 1) if self.norm.affine else y


def batch_safe(module: torch.nn.Module) -> None:
    """Replace, in place, every ``nn.GroupNorm`` under ``module`` by :class:`BatchSafeGroupNorm`."""
    for name, child in module.named_children():
        if isinstance(child, torch.nn.GroupNorm):
            setattr(module, name, BatchSafeGroupNorm(child))
        else:
            batch_safe(child)


def _traced_inference(model, inputs) -> Tuple[torch.Tensor, ...]:
    inst = model.inference(inputs, do_postprocess=False)[0]
    out = (inst.pred_boxes.tensor, inst.scores, inst.pred_classes, inst.objectness)
    return out + (inst.pred_masks,) if inst.has("pred_masks") else out


def _example_input(cfg: CfgNode, example_rgb: np.ndarray) -> torch.Tensor:
    from detectron2.data import transforms as T

    resize = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)
    return model_input(example_rgb, resize, cfg.INPUT.FORMAT)["image"]


def export_detector(cfg: CfgNode, weights: str, out: Path, example_rgb: np.ndarray) -> List[str]:
    """Write ``out`` (the graph above) for the detector ``cfg`` + ``weights`` (``cfg`` as ``inference_cfg`` gives
    it: masks only when recorded), traced on ``example_rgb`` ([H, W, 3] uint8); returns the output names."""
    from detectron2.export import TracingAdapter

    if cfg.DETRET.DETECT.PRECISION != "fp32":
        raise InputError(f"the detector is exported in fp32 (DETRET.DETECT.PRECISION is "
                         f"{cfg.DETRET.DETECT.PRECISION!r}); int8 comes from quantizing that graph")
    model = load_detector(cfg, weights, torch.device("cpu"))
    batch_safe(model.roi_heads)   # (the backbone's batch is the one photo: never empty)
    adapter = TracingAdapter(model, [{"image": _example_input(cfg, example_rgb)}], _traced_inference).eval()
    names = list(OUTPUTS_MASKS if cfg.MODEL.MASK_ON else OUTPUTS_BOXES)
    with atomic_path(Path(out)) as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the tracer's warnings about Python values in Detectron2's code
        torch.onnx.export(adapter, adapter.flattened_inputs, str(tmp), dynamo=False, opset_version=OPSET,
                          input_names=["image"], output_names=names,
                          dynamic_axes={"image": {1: "height", 2: "width"}, **{n: {0: "detections"} for n in names}})
    return names
