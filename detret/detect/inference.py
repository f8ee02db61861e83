"""Batched, resumable detector inference over the photos of a split.

Photos are decoded and resized in DataLoader workers (the same resize as
Detectron2's ``DefaultPredictor``: shortest edge to ``INPUT.MIN_SIZE_TEST``,
longest at most ``INPUT.MAX_SIZE_TEST``); the model sees up to ``DETRET.DETECT.BATCH_SIZE``
photos of one padded shape per forward pass under ``torch.inference_mode``. The mask head is
switched off unless masks are recorded (``DETRET.DETECT.MASKS``, for mask crops). A photo that cannot be decoded is
recorded with the reason and the run goes on. ``DETRET.DETECT.PRECISION: bf16`` runs
the ResNet bottom-up (most of the compute) channels-last under bfloat16 autocast and
keeps FPN, RPN and box heads in fp32: autocasting the whole model was slower on the
CPU (casts around every head op) and changed more crops.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Sequence, Tuple

import numpy as np
import torch
from detectron2.config import CfgNode
from torch.utils.data import DataLoader, Dataset

from ..data.images import PhotoError, read_rgb
from .artifact import PhotoDetections
from .crops import Detection
from .masks import encode_mask
from .portable import PortableDetector

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
        return {"photo_id": photo_id, **model_input(rgb, self.resize, self.input_format)}


def model_input(rgb: np.ndarray, resize, input_format: str) -> Dict:
    """[H, W, 3] uint8 RGB -> Detectron2's input dict: the image resized as ``DefaultPredictor`` does."""
    img = rgb[:, :, ::-1] if input_format == "BGR" else rgb
    height, width = img.shape[:2]
    resized = resize.get_transform(img).apply_image(img)
    tensor = torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1)))  # [3, H', W'] uint8
    return {"image": tensor, "height": height, "width": width}


def inference_cfg(cfg: CfgNode) -> CfgNode:
    """The detector config for inference: masks off (boxes are all a box crop needs), unless they are recorded
    for mask crops (``DETRET.DETECT.MASKS``)."""
    out = cfg.clone()
    out.defrost()
    out.MODEL.MASK_ON = bool(cfg.MODEL.MASK_ON and cfg.DETRET.DETECT.MASKS)
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
    """The detections of one photo; with their masks (run-length encoded) when the model predicts them."""
    boxes = instances.pred_boxes.tensor.tolist()
    classes = instances.pred_classes.tolist()
    scores = instances.scores.tolist()
    objectness = instances.objectness.tolist()
    masks = [encode_mask(m) for m in instances.pred_masks.numpy()] if instances.has("pred_masks") else \
        [None] * len(boxes)
    return [Detection(tuple(b), labels[c], s, o, m) for b, c, s, o, m in zip(boxes, classes, scores, objectness,
                                                                             masks)]


def _padded_shape(image: torch.Tensor, divisibility: int) -> Tuple[int, int]:
    """The (H, W) Detectron2's ``ImageList`` pads this image to when it is alone in a batch."""
    d = max(int(divisibility), 1)
    return -(-image.shape[1] // d) * d, -(-image.shape[2] // d) * d


def shape_batches(samples: Iterable[Dict], batch_size: int, divisibility: int,
                  max_waiting: int) -> Iterator[List[Dict]]:
    """Group decoded photos into batches of one padded shape each.

    A batch is padded to its largest photo, so a portrait and a landscape photo together
    cost about twice their own compute, and their features near the padding differ from
    single-photo inference. Photos wait in one bucket per padded shape; a bucket leaves
    when it is full, the fullest one when `max_waiting` photos wait (memory stays bounded),
    and all at the end. Unreadable photos (``"error"``) leave at once.
    """
    buckets: Dict[Tuple[int, int], List[Dict]] = {}
    waiting = 0
    for sample in samples:
        if "error" in sample:
            yield [sample]
            continue
        key = _padded_shape(sample["image"], divisibility)
        bucket = buckets.setdefault(key, [])
        bucket.append(sample)
        waiting += 1
        if len(bucket) >= batch_size:
            waiting -= len(bucket)
            yield buckets.pop(key)
        elif waiting > max_waiting:
            fullest = max(buckets, key=lambda k: len(buckets[k]))
            waiting -= len(buckets[fullest])
            yield buckets.pop(fullest)
    for key in list(buckets):
        yield buckets.pop(key)


def _forward(model: torch.nn.Module, batch: Sequence[Dict], labels: Sequence[str], device: torch.device
             ) -> List[List[Detection]]:
    """The detections of a batch of ``model_input`` samples of one padded shape, in one forward pass."""
    inputs = [{"image": b["image"].to(device), "height": b["height"], "width": b["width"]} for b in batch]
    with torch.inference_mode():
        outputs = model(inputs)
    return [to_detections(out["instances"].to("cpu"), labels) for out in outputs]


def detect_photos(
    model: torch.nn.Module,
    cfg: CfgNode,
    items: Sequence[Tuple[int, Path]],
    labels: Sequence[str],
    device: torch.device,
    on_batch: Callable[[List[PhotoDetections]], None],
) -> Iterator[int]:
    """Run the detector over `items`, handing each batch's results to `on_batch`; yields the
    number of photos each batch handled. Batches hold photos of one padded shape (see
    ``shape_batches``), so every photo's detections are those of single-photo inference."""
    if isinstance(model, PortableDetector):
        yield from _detect_photos_portable(model, cfg, items, on_batch)
        return
    dataset = PhotoDataset(items, cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST, cfg.INPUT.FORMAT)
    workers = int(cfg.DETRET.DETECT.NUM_WORKERS)
    batch_size = int(cfg.DETRET.DETECT.BATCH_SIZE)
    loader = DataLoader(dataset, batch_size=None, shuffle=False, num_workers=workers, persistent_workers=False,
                        prefetch_factor=2 * batch_size if workers else None)
    divisibility = getattr(model.backbone, "size_divisibility", 0)
    for batch in shape_batches(loader, batch_size, divisibility, max_waiting=4 * batch_size):
        results = [PhotoDetections(b["photo_id"], status="skipped", reason=b["error"]) for b in batch if "error" in b]
        ok = [b for b in batch if "error" not in b]
        for b, found in zip(ok, _forward(model, ok, labels, device) if ok else []):
            results.append(PhotoDetections(b["photo_id"], b["width"], b["height"], found))
        on_batch(results)
        yield len(batch)


class RawPhotos(Dataset):
    """(photo id, path) -> the photo as [H, W, 3] uint8 RGB, or the reason it cannot be read."""

    def __init__(self, items: Sequence[Tuple[int, Path]]):
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Dict:
        photo_id, path = self.items[i]
        try:
            return {"photo_id": photo_id, "rgb": read_rgb(path)}
        except PhotoError as exc:
            return {"photo_id": photo_id, "error": exc.reason}


def _as_is(sample: Dict) -> Dict:
    return sample   # (the default would turn the numpy photo into a tensor)


def _detect_photos_portable(model: PortableDetector, cfg: CfgNode, items: Sequence[Tuple[int, Path]],
                            on_batch: Callable[[List[PhotoDetections]], None]) -> Iterator[int]:
    """``detect_photos`` on the ONNX Runtime engine: photos decoded in DataLoader workers, one graph run each
    (the graph takes one photo; on a CPU a batch of photos costs their sum anyway)."""
    workers = int(cfg.DETRET.DETECT.NUM_WORKERS)
    loader = DataLoader(RawPhotos(items), batch_size=None, shuffle=False, num_workers=workers,
                        prefetch_factor=4 if workers else None, collate_fn=_as_is)
    for sample in loader:
        if "error" in sample:
            on_batch([PhotoDetections(sample["photo_id"], status="skipped", reason=sample["error"])])
        else:
            rgb = sample["rgb"]
            on_batch([PhotoDetections(sample["photo_id"], rgb.shape[1], rgb.shape[0], model.detect(rgb))])
        yield 1


def detect_arrays(model: torch.nn.Module, cfg: CfgNode, photos: Sequence[np.ndarray], labels: Sequence[str],
                  device: torch.device) -> List[List[Detection]]:
    """The detections of photos already in memory ([H, W, 3] uint8 RGB; the service's uploads), each as
    single-photo inference gives them: photos of one padded shape share a forward pass."""
    from detectron2.data import transforms as T

    if isinstance(model, PortableDetector):
        return [model.detect(p) for p in photos]

    resize = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)
    samples = [{"photo_id": i, **model_input(rgb, resize, cfg.INPUT.FORMAT)} for i, rgb in enumerate(photos)]
    divisibility = getattr(model.backbone, "size_divisibility", 0)
    out: List[List[Detection]] = [[] for _ in photos]
    for batch in shape_batches(samples, max(1, int(cfg.DETRET.DETECT.BATCH_SIZE)), divisibility,
                               max_waiting=len(samples)):
        for b, found in zip(batch, _forward(model, batch, labels, device)):
            out[b["photo_id"]] = found
    return out
