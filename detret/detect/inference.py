"""Batched, resumable detector inference over the photos of a split.

Photos are decoded and resized in DataLoader workers (the same resize as
Detectron2's ``DefaultPredictor``: shortest edge to ``INPUT.MIN_SIZE_TEST``,
longest at most ``INPUT.MAX_SIZE_TEST``); the model sees ``DETRET.DETECT.BATCH_SIZE``
photos per forward pass under ``torch.inference_mode``. The mask head is
switched off: the crop needs boxes only. A photo that cannot be decoded is
recorded with the reason and the run goes on. ``DETRET.DETECT.PRECISION: bf16`` runs
the ResNet bottom-up (most of the compute) channels-last under bfloat16 autocast and
keeps FPN, RPN and box heads in fp32: autocasting the whole model was slower on the
CPU (casts around every head op) and changed more crops.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Sequence, Tuple

import numpy as np
import torch
from detectron2.config import CfgNode
from torch.utils.data import DataLoader, Dataset

from ..data.images import PhotoError, read_rgb
from .artifact import PhotoDetections
from .crops import Detection

logger = logging.getLogger(__name__)


class PhotoDataset(Dataset):
    """(photo id, path) -> the model input dict, or the reason it cannot be read."""

    def __init__(self, items: Sequence[Tuple[int, Path]], min_size: int, max_size: int, input_format: str):
        from detectron2.data import transforms as T

        self.items = list(items)
        self.resize = T.ResizeShortestEdge([min_size, min_size], max_size)
        self.input_format = input_format

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Dict:
        photo_id, path = self.items[i]
        try:
            rgb = read_rgb(path)
        except PhotoError as exc:
            return {"photo_id": photo_id, "error": exc.reason}
        img = rgb[:, :, ::-1] if self.input_format == "BGR" else rgb
        height, width = img.shape[:2]
        resized = self.resize.get_transform(img).apply_image(img)
        tensor = torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1)))  # [3, H', W'] uint8
        return {"photo_id": photo_id, "image": tensor, "height": height, "width": width}


def _collate(batch: List[Dict]) -> List[Dict]:
    return batch


def inference_cfg(cfg: CfgNode) -> CfgNode:
    """The detector config for inference: masks off (boxes are all the crop needs)."""
    out = cfg.clone()
    out.defrost()
    out.MODEL.MASK_ON = False
    out.freeze()
    return out


class Bf16BottomUp(torch.nn.Module):
    """A Detectron2 bottom-up backbone run channels-last under bfloat16 autocast, fp32 outputs."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            out = self.inner(x.contiguous(memory_format=torch.channels_last))
        return {name: feature.float().contiguous() for name, feature in out.items()}

    def output_shape(self):
        return self.inner.output_shape()

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:  # size_divisibility, padding_constraints, ... of the wrapped backbone
            return getattr(super().__getattr__("inner"), name)


def load_detector(cfg: CfgNode, weights: str, device: torch.device) -> torch.nn.Module:
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.modeling import build_model

    cfg = inference_cfg(cfg)
    cfg.defrost()
    cfg.MODEL.DEVICE = str(device)
    cfg.freeze()
    model = build_model(cfg).eval()
    DetectionCheckpointer(model).load(weights)
    if cfg.DETRET.DETECT.PRECISION == "bf16":
        model.backbone.bottom_up = Bf16BottomUp(model.backbone.bottom_up)
    return model


def to_detections(instances, labels: Sequence[str]) -> List[Detection]:
    boxes = instances.pred_boxes.tensor.tolist()
    classes = instances.pred_classes.tolist()
    scores = instances.scores.tolist()
    objectness = instances.objectness.tolist()
    return [Detection(tuple(b), labels[c], s, o) for b, c, s, o in zip(boxes, classes, scores, objectness)]


def detect_photos(
    model: torch.nn.Module,
    cfg: CfgNode,
    items: Sequence[Tuple[int, Path]],
    labels: Sequence[str],
    device: torch.device,
    on_batch: Callable[[List[PhotoDetections]], None],
) -> Iterator[float]:
    """Run the detector over `items`, handing each batch's results to `on_batch`; yields photos/s."""
    dataset = PhotoDataset(items, cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST, cfg.INPUT.FORMAT)
    workers = int(cfg.DETRET.DETECT.NUM_WORKERS)
    loader = DataLoader(dataset, batch_size=int(cfg.DETRET.DETECT.BATCH_SIZE), shuffle=False,
                        num_workers=workers, collate_fn=_collate, persistent_workers=False,
                        prefetch_factor=2 if workers else None)
    start, seen = time.perf_counter(), 0
    for batch in loader:
        results = [PhotoDetections(b["photo_id"], status="skipped", reason=b["error"]) for b in batch if "error" in b]
        ok = [b for b in batch if "error" not in b]
        if ok:
            inputs = [{"image": b["image"].to(device), "height": b["height"], "width": b["width"]} for b in ok]
            with torch.inference_mode():
                outputs = model(inputs)
            for b, out in zip(ok, outputs):
                inst = out["instances"].to("cpu")
                results.append(PhotoDetections(b["photo_id"], b["width"], b["height"], to_detections(inst, labels)))
        on_batch(results)
        seen += len(batch)
        yield seen / max(time.perf_counter() - start, 1e-9)
