"""Crops and descriptors of the photos an add brings, in this process or data-parallel.

Each photo is read, cropped (its given box, or the detector and the paper's policy for its
category, as ``detect --split shop`` crops a run's gallery) and embedded as ``embed`` embeds a
gallery row (``Describer``, side "gallery"). Work is done in batches written to
``staging/<key>/<batch>.npz`` (``key``: a hash of the photos and the model), so a killed add
rerun with the same product list computes only the batches it had not finished, and with
``--num-gpus N`` process r computes batches r, r + N, ... (Detectron2's ``launch``, as
``embed``). Nothing here touches the database: the add commits the results in one change.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..data.boxes import BoxXYXY
from ..data.images import PhotoError, read_rgb
from ..detect.crops import given_box_crop
from ..runs.atomic import atomic_path
from ..utils.device import DataParallel, data_parallel_device
from ..utils.progress import progress
from .binding import BoundModels, read_card

# (photo path, category, given box or None): what a photo to add needs to be computed
Item = Tuple[str, str, Optional[BoxXYXY]]


@dataclass
class Computed:
    """What one photo became: its crop and size, or why it cannot be used (``reason``)."""

    reason: Optional[str] = None
    box_xyxy: Optional[List[float]] = None
    rule: Optional[str] = None
    width: int = 0
    height: int = 0


def compute_batch(models: BoundModels, items: Sequence[Item]) -> Tuple[List[Computed], np.ndarray]:
    """(one record per item, descriptors [n usable, D] in item order). A photo the models fail on is that
    photo's problem alone: when the batch fails, each photo is computed alone, and one that fails alone is
    recorded unusable with the models' error; a failure of every photo of a batch of several is not the
    photos' (a device out of memory, a bug) and is raised."""
    try:
        return _compute_together(models, items)
    except Exception as first:  # noqa: BLE001 -- which photo failed is found below, one at a time
        records: List[Computed] = []
        parts = [np.zeros((0, models.card.dim), np.float32)]
        for item in items:
            try:
                rec, desc = _compute_together(models, [item])
            except Exception as exc:  # noqa: BLE001 -- this photo's failure alone: recorded with its reason
                rec, desc = [Computed(reason=f"the models cannot read it ({type(exc).__name__}: {exc})")], parts[0]
            records += rec
            parts.append(desc)
        if len(items) > 1 and all(r.reason and r.reason.startswith("the models cannot read it") for r in records):
            raise first
        return records, np.concatenate(parts)


def _compute_together(models: BoundModels, items: Sequence[Item]) -> Tuple[List[Computed], np.ndarray]:
    records: List[Computed] = []
    photos, boxes, need_detection = [], [], []
    for path, category, box in items:
        try:
            rgb = read_rgb(Path(path))
        except PhotoError as exc:
            records.append(Computed(reason=exc.reason))
            continue
        records.append(Computed(width=rgb.shape[1], height=rgb.shape[0]))
        photos.append((len(records) - 1, rgb, category, box))
        if box is None:
            need_detection.append(len(photos) - 1)
    found = dict(zip(need_detection, models.detect([photos[i][1] for i in need_detection])))
    for j, (i, rgb, category, box) in enumerate(photos):
        size_wh = (rgb.shape[1], rgb.shape[0])
        crop = models.crop(found[j], category, size_wh) if box is None else given_box_crop(box, size_wh)
        if crop is None:
            records[i] = Computed(reason=f"box {list(box)} lies outside the photo ({size_wh[0]}x{size_wh[1]} px)")
            continue
        records[i].box_xyxy = [float(v) for v in crop.box_xyxy]
        records[i].rule = crop.rule
        boxes.append((i, rgb, found[j][crop.detection].mask if crop.detection is not None else None))
    usable = [i for i, _, _ in boxes]
    desc = models.describe([rgb for _, rgb, _ in boxes], [tuple(records[i].box_xyxy) for i in usable], "gallery",
                           [mask for _, _, mask in boxes])
    return records, desc


def staging_key(items: Sequence[Item], identity: str, batch_size: int) -> str:
    return hashlib.sha256(json.dumps([identity, batch_size, list(items)]).encode()).hexdigest()[:16]


def _batch_file(folder: Path, b: int) -> Path:
    return folder / f"{b:06d}.npz"


def _compute_batches(models: BoundModels, items: Sequence[Item], folder: Path, batch_size: int,
                     rank: int = 0, world: int = 1) -> None:
    starts = range(0, len(items), batch_size)
    for b, start in enumerate(progress(starts, "cropping and embedding new photos", unit="batch")):
        if b % world != rank or _batch_file(folder, b).is_file():
            continue
        records, desc = compute_batch(models, items[start:start + batch_size])
        with atomic_path(_batch_file(folder, b)) as tmp:
            np.savez(tmp, descriptors=desc, records=np.array(json.dumps([asdict(r) for r in records])))


def _worker(root: str, items: List[Item], folder: str, device_name: str, batch_size: int) -> None:
    """One process of a data-parallel add: its share of the batches."""
    from detectron2.utils import comm

    models = BoundModels(read_card(Path(root)), Path(root), data_parallel_device(device_name))
    _compute_batches(models, [tuple(i) for i in items], Path(folder), batch_size, comm.get_rank(),
                     comm.get_world_size())
    comm.synchronize()


def compute_all(root: Path, items: Sequence[Item], *, models: Optional[BoundModels], device, batch_size: int,
                parallel: Optional[DataParallel] = None) -> Tuple[List[Computed], np.ndarray, Path]:
    """(a record per item, descriptors [n usable, D] in item order, the staging folder to delete once
    the change is committed). ``models`` is loaded on ``device`` when None and needed in this process."""
    root = Path(root)
    card = read_card(root)
    staging = root / "staging"
    folder = staging / staging_key(items, card.identity, batch_size)
    for other in (p for p in staging.iterdir() if p != folder) if staging.is_dir() else ():
        shutil.rmtree(other, ignore_errors=True)  # an earlier add's batches (the writer's lock is held)
    folder.mkdir(parents=True, exist_ok=True)
    if parallel is not None and parallel.world > 1:
        parallel.launch(_worker, str(root), [list(i) for i in items], str(folder), str(device), batch_size)
    else:
        _compute_batches(models or BoundModels(card, root, device), items, folder, batch_size)
    records: List[Computed] = []
    parts = [np.zeros((0, card.dim), np.float32)]
    for b in range((len(items) + batch_size - 1) // batch_size):
        with np.load(_batch_file(folder, b)) as z:
            records += [Computed(**r) for r in json.loads(str(z["records"]))]
            parts.append(z["descriptors"])
    return records, np.concatenate(parts), folder
