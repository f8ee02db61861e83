"""Descriptors of crops: reusable inference, for the embed stage, ``detret query`` and the benchmarks.

- :func:`embed_crops`: one model, a list of crops -> [n, D] descriptors, each model reading
  the crop at its own image size and normalisation (from its checkpoint's meta); with
  several ``scales`` the descriptors are averaged over the scales and L2-normalised.
  Batches of same-size images under ``torch.inference_mode`` (bf16: channels-last under
  bfloat16 autocast).
- :func:`embed_rows`: every row of a side (photos and boxes), several models concatenated and
  L2-normalised (an ensemble, Section 3.2), photos decoded and cropped in DataLoader
  workers, written in shards of ``shard_size`` rows (``parts/``) so that a rerun computes
  only the missing shards; data-parallel processes each take every W-th shard.
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from ..data.boxes import BoxXYXY
from ..data.images import PhotoError, read_rgb
from ..detect.masks import BOX, CropShape
from ..errors import InputError
from ..retrieval.descriptor_model import DescriptorNet
from ..retrieval.preprocess import network_input
from ..runs.atomic import atomic_path, atomic_write_text
from ..utils.progress import progress


class CropDataset(Dataset):
    """Row index -> the crop as [H, W, 3] uint8, or the reason it cannot be read."""

    def __init__(self, paths: Sequence[Path], boxes: Sequence[Optional[BoxXYXY]],
                 masks: Optional[Sequence[Optional[Dict]]] = None, shape: CropShape = BOX):
        self.paths, self.boxes, self.shape = list(paths), list(boxes), shape
        self.masks = list(masks) if masks is not None else [None] * len(self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Dict:
        try:
            return {"i": i, "crop": self.shape.cut(read_rgb(self.paths[i]), self.boxes[i], self.masks[i])}
        except PhotoError as exc:
            return {"i": i, "error": exc.reason, "path": str(exc.path)}


def _collate(batch):
    return batch


def embed_crops(model: DescriptorNet, crops: List[np.ndarray], scales: Sequence[float], device,
                 precision: str = "fp32", domain: str = "shop") -> torch.Tensor:
    """[n, D] descriptors of one model for a list of crops (averaged over scales, L2-normalised),
    photos of `domain` ("shop" or "street": a two-stream network embeds each by its own stream).

    ``precision="bf16"``: channels-last batches under bfloat16 autocast (fast on CPUs with
    AMX/AVX-512-BF16 and on GPUs); descriptors stay float32.
    """
    total = None
    for scale in scales:
        tensors = _inputs(model, crops, scale)
        out = torch.empty(len(tensors), model.dim)
        by_shape: Dict[tuple, List[int]] = {}
        for i, t in enumerate(tensors):
            by_shape.setdefault(tuple(t.shape), []).append(i)
        autocast = torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16) \
            if precision == "bf16" else contextlib.nullcontext()
        with torch.inference_mode(), autocast:
            for idx in by_shape.values():
                batch = torch.stack([tensors[i] for i in idx]).to(device)
                if precision == "bf16":
                    batch = batch.contiguous(memory_format=torch.channels_last)
                out[idx] = model(batch, domain).float().cpu()
        total = out if total is None else total + out
    return F.normalize(total, dim=1)


def _inputs(model: DescriptorNet, crops: List[np.ndarray], scale: float) -> List[torch.Tensor]:
    """Each crop as the model's input [3, H, W]: a foundation model's own preprocessing (at its one input
    size), or a retrieval network's resize and normalisation at ``scale`` times its image size."""
    if hasattr(model, "preprocess"):
        if scale != 1.0:
            raise InputError(f"{model.meta.get('library')}:{model.meta.get('name')}: a foundation model reads "
                             f"photos at its own input size; scales other than 1 are not supported (got {scale})")
        return [model.preprocess(c) for c in crops]
    return [network_input(c, model.meta, scale) for c in crops]


def describe_crops(models: Sequence[DescriptorNet], crops: List[np.ndarray], scales: Sequence[float], device,
                   precision: str = "fp32", domain: str = "shop") -> torch.Tensor:
    """[n, sum of D] descriptors of several models, concatenated and L2-normalised (an ensemble, Section 3.2)."""
    parts = [embed_crops(m, crops, scales, device, precision, domain) for m in models]
    return F.normalize(torch.cat(parts, dim=1), dim=1)


def clear_parts(parts: Path, remove_folder: bool) -> None:
    """Delete the shards of :func:`embed_rows` (a fresh start, or once the descriptors are assembled)."""
    if parts.exists():
        for p in parts.iterdir():
            p.unlink()
        if remove_folder:
            parts.rmdir()


def _embed_shard(models: List[DescriptorNet], paths: List[Path], boxes: List, first_row: int, *,
                 scales: Sequence[float], device, batch_size: int, workers: int, precision: str, domain: str,
                 masks: Optional[List] = None, shape: CropShape = BOX) -> Tuple[np.ndarray, List[Dict]]:
    """(descriptors [n, D], zero rows for unreadable photos; their records with the row number)."""
    shard = np.zeros((len(paths), sum(m.dim for m in models)), np.float32)
    skipped = []
    loader = DataLoader(CropDataset(paths, boxes, masks, shape), batch_size=batch_size, num_workers=workers,
                        collate_fn=_collate)
    for batch in loader:
        ok = [b for b in batch if "crop" in b]
        skipped += [{"row": first_row + b["i"], "path": b["path"], "reason": b["error"]}
                    for b in batch if "error" in b]
        if not ok:
            continue
        crops = [b["crop"] for b in ok]
        shard[[b["i"] for b in ok]] = describe_crops(models, crops, scales, device, precision, domain).numpy()
    return shard, skipped


def embed_rows(models: List[DescriptorNet], paths: List[Path], boxes: List, parts_dir: Path, side: str, *,
               scales: Sequence[float], device, batch_size: int, workers: int, shard_size: int,
               precision: str = "fp32", rank: int = 0, world: int = 1, domain: str = "shop",
               masks: Optional[List] = None, shape: CropShape = BOX) -> Tuple[np.ndarray, List[Dict]]:
    """(descriptors [N, D] with zero rows for skipped photos, skipped records); resumable by shard.
    `domain`: the photos' ("shop" or "street"), which picks a two-stream network's stream.

    With ``world`` > 1 this process computes only the missing shards ``rank, rank + world, ...``
    (a data-parallel worker; its return value is then partial)."""
    n = len(paths)
    dim = sum(m.dim for m in models)
    out = np.zeros((n, dim), np.float32)
    skipped: List[Dict] = []
    for start in progress(range(0, n, shard_size), f"embedding {side}", unit="shard"):
        shard_path = parts_dir / f"{side}_{start // shard_size:05d}.npy"
        skip_path = parts_dir / f"{side}_{start // shard_size:05d}.skipped.json"
        stop = min(n, start + shard_size)
        if shard_path.is_file() and skip_path.is_file():
            out[start:stop] = np.load(shard_path)
            skipped.extend(json.loads(skip_path.read_text()))
            continue
        if (start // shard_size) % world != rank:
            continue  # another process's shard
        shard, shard_skipped = _embed_shard(models, paths[start:stop], boxes[start:stop], start, scales=scales,
                                            device=device, batch_size=batch_size, workers=workers,
                                            precision=precision, domain=domain,
                                            masks=None if masks is None else masks[start:stop], shape=shape)
        with atomic_path(shard_path) as tmp:
            np.save(tmp, shard)
        atomic_write_text(skip_path, json.dumps(shard_skipped))
        out[start:stop] = shard
        skipped.extend(shard_skipped)
    return out, skipped
