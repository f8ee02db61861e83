"""`detret detect`: crop every photo of a split, by the paper's policy, into the run directory.

Splits: ``shop`` (the gallery: every shop photo of every category) and
``street`` (the street photos of the ``test`` or ``train`` pairs). Shop photos
are cropped by the detector and :func:`select_crop`; street queries by their
annotated box (Section 3.3), with the detector's output recorded beside it
(for the report's figures) unless ``run_detector=False``.

The stage in steps: the photos and the crop units of the split; the detector's raw
output per photo, cached line by line (``photos.partial*.jsonl``, so a killed run
resumes), in this process or data-parallel over several; then one crop per unit and
the artifact (see ``artifact.py``).
"""
from __future__ import annotations

import logging
from collections import Counter, defaultdict
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from detectron2.config import CfgNode
from omegaconf import DictConfig
from torchvision.ops import box_iou

from ..config.choices import Split, Subset, check_choice
from ..data.boxes import BoxXYXY
from ..data.categories import Categories, load_categories
from ..data.shop_boxes import read_shop_boxes
from ..data.street2shop import Street2Shop, load_street2shop
from ..errors import InputError
from ..runs.layout import RunLayout
from ..runs.stage import Stage
from ..utils.device import DataParallel, data_parallel_device, resolve_device
from ..utils.progress import counter, progress
from .artifact import (
    ARTIFACT_NAME,
    PARTIAL_NAME,
    CropRecord,
    PhotoDetections,
    append_partial,
    read_partial,
    write_artifact,
)
from .config import DetectorChoice, choose_detector, detector_identity
from .crops import Crop, Detection, ground_truth_crop, select_crop
from .masks import matching_detection
from .engine import open_detector, photos_reader
from .inference import detect_photos, load_detector

logger = logging.getLogger(__name__)

PhotoItem = Tuple[int, Path]                      # (photo id, path)
CropUnit = Tuple[int, str, Optional[int], Optional[Tuple[float, float, float, float]]]  # photo, category,
#                                                   query record (street), annotated box (street)


def work_items(data: Street2Shop, split: str, subset: str) -> Tuple[List[PhotoItem], List[CropUnit]]:
    """(unique photos to run the detector on, units to crop: (photo, category, record, box))."""
    units: List[CropUnit] = []
    if split == "shop":
        for cat in data.categories:
            units.extend((s.photo_id, cat, None, None) for s in data.gallery[cat])
    else:
        units.extend((q.photo_id, q.category, q.record, q.box_xyxy) for q in data.queries(subset))
    photos = sorted({u[0] for u in units})
    return [(p, data.photo_path(p)) for p in photos], units


COVERS_IOU = 0.5  # a crop "covers the product" when its IoU with the product's true box reaches this


def covering_share(records: List[CropRecord], true_boxes: Mapping[Tuple[str, int], Sequence[BoxXYXY]]
                   ) -> Optional[float]:
    """Share of the photos whose crop is a detection with IoU >= 0.5 against one of the product's true boxes
    (the whole product's, or one of its pieces': a shoe of a pair; see detret.data.shop_boxes)."""
    known = [r for r in records if (r.category, r.photo_id) in true_boxes]
    if not known:
        return None
    covered = 0
    for r in known:
        if r.crop.rule == "detection":
            truth = torch.tensor(true_boxes[(r.category, r.photo_id)], dtype=torch.float64).reshape(-1, 4)
            crop = torch.tensor([r.crop.box_xyxy], dtype=torch.float64)
            covered += bool(box_iou(crop, truth).max() >= COVERS_IOU)
    return covered / len(known)


def summarise(records: List[CropRecord], true_boxes: Optional[Mapping[Tuple[str, int], Sequence[BoxXYXY]]] = None
              ) -> Dict[str, Dict]:
    """Per category: photos, skipped, crops by rule, fallback rate, mean score of chosen detections, and with
    the products' true boxes (synthetic shop photos), the share whose detection crop covers the product."""
    by_cat: Dict[str, List[CropRecord]] = defaultdict(list)
    for r in records:
        by_cat[r.category].append(r)
    out = {}
    for cat in sorted(by_cat):
        rows = by_cat[cat]
        ok = [r for r in rows if r.status == "ok"]
        rules = Counter(r.crop.rule for r in ok)
        chosen = [r.detections[r.crop.detection].score for r in ok if r.crop.detection is not None]
        out[cat] = {"photos": len(rows), "skipped": len(rows) - len(ok), "rules": dict(sorted(rules.items())),
                    "fallback_rate": rules["fallback"] / len(ok) if ok else None,
                    "mean_score": sum(chosen) / len(chosen) if chosen else None}
        if true_boxes is not None:
            out[cat]["covers_product"] = covering_share(ok, true_boxes)
    return out


def read_partials(stage_dir: Path) -> Dict[int, PhotoDetections]:
    """Every cache of the stage: one process's ``photos.partial.jsonl`` and those of data-parallel ranks."""
    done: Dict[int, PhotoDetections] = {}
    for path in sorted(Path(stage_dir).glob("photos.partial*.jsonl")):
        done.update(read_partial(path))
    return done


def _remove_partials(stage_dir: Path) -> None:
    for cache in stage_dir.glob("photos.partial*.jsonl"):
        cache.unlink()


def _detect_worker(cfg_text: str, weights: str, items: List[Tuple[int, str]], stage_dir: str, labels: List[str],
                   device_name: str) -> None:
    """One process of a data-parallel detection: every W-th photo, cached to its own file."""
    from detectron2.utils import comm

    rank, world = comm.get_rank(), comm.get_world_size()
    device = data_parallel_device(device_name)
    cfg = CfgNode.load_cfg(cfg_text)
    cfg.freeze()
    mine = [(p, Path(path)) for p, path in items[rank::world]]
    cache = Path(stage_dir) / f"photos.partial.r{rank}.jsonl"
    if mine:
        model = load_detector(cfg, weights, device)
        for _ in detect_photos(model, cfg, mine, labels, device, lambda results: append_partial(cache, results)):
            pass
    comm.synchronize()


def gallery_paths(data) -> List[Path]:
    """The dataset's shop photos in photo order: what traces and calibrates an exported detector."""
    return [data.photo_path(p) for p in sorted({s.photo_id for c in data.categories for s in data.gallery[c]})]


def _detect_here(choice: DetectorChoice, todo: List[PhotoItem], labels: List[str], device: torch.device,
                 stage_dir: Path, done: Dict[int, PhotoDetections], split: str, data) -> None:
    """The detector over `todo` in this process, each batch appended to the cache and to `done` (``data``: the
    dataset, whose shop photos trace and calibrate an exported detector, read only when one is made)."""
    model = open_detector(choice.cfg, choice.weights, device, lambda n: photos_reader(gallery_paths(data))(n),
                          "the dataset's shop photos")

    def on_batch(results: List[PhotoDetections]) -> None:
        append_partial(stage_dir / PARTIAL_NAME, results)
        done.update((r.photo_id, r) for r in results)

    with counter(f"detect {split}", len(todo)) as bar:
        for n_photos in detect_photos(model, choice.cfg, todo, labels, device, on_batch):
            bar.update(n_photos)


def _detect_parallel(choice: DetectorChoice, todo: List[PhotoItem], labels: List[str], device: torch.device,
                     stage_dir: Path, parallel: DataParallel) -> Optional[Dict[int, PhotoDetections]]:
    """The detector over `todo` in Detectron2's ``launch`` group; machine 0 gets every result (others None)."""
    parallel.launch(_detect_worker, choice.cfg.dump(), choice.weights, [(p, str(path)) for p, path in todo],
                    str(stage_dir), labels, str(device))
    if parallel.machine_rank != 0:
        return None
    done = read_partials(stage_dir)
    missing = [p for p, _ in todo if p not in done]
    if missing:
        raise RuntimeError(f"{stage_dir}: {len(missing)} photos have no result after the data-parallel run "
                           f"(e.g. {missing[:5]}); rerun the command to finish them")
    return done


def _read_sizes(photos: List[PhotoItem], done: Dict[int, PhotoDetections]) -> None:
    """Street photos without the detector: only their sizes (to clip the annotated boxes)."""
    from ..data.images import PhotoError, photo_size

    for p, path in progress(photos, "reading photo sizes"):
        if p in done:
            continue
        try:
            w, h = photo_size(path)
            done[p] = PhotoDetections(p, w, h)
        except PhotoError as exc:
            done[p] = PhotoDetections(p, status="skipped", reason=exc.reason)


def crop_mask(detections: Sequence[Detection], crop: Crop, labels: Sequence[str]):
    """The mask of a crop (None without recorded masks): its detection's, or for a box not chosen among the
    detections (a street photo's annotated box) that of the best-matching detection of its labels."""
    if crop.detection is not None:
        return detections[crop.detection].mask
    if crop.rule == "ground_truth":
        match = matching_detection(detections, crop.box_xyxy, labels)
        return None if match is None else detections[match].mask
    return None


def crop_records(units: List[CropUnit], done: Dict[int, PhotoDetections], split: str, cats: Categories,
                 choice: Optional[DetectorChoice]) -> List[CropRecord]:
    """One record per unit: the policy's crop (shop) or the annotated box (street), or why it was skipped."""
    policy = choice.cfg.DETRET.CROP.POLICY if choice is not None else "category"
    thresh = float(choice.cfg.DETRET.CROP.OBJECTNESS_THRESH) if choice is not None else 0.5
    records = []
    for photo_id, cat, record, gt_box in units:
        det = done[photo_id]
        if det.status != "ok":
            records.append(CropRecord(photo_id, split, cat, record, 0, 0, [], None, "skipped", det.reason))
            continue
        size = (det.width, det.height)
        crop = ground_truth_crop(gt_box, size) if split == "street" else select_crop(
            det.detections, cat, cats.street2shop_to_modanet, size, objectness_thresh=thresh, policy=policy)
        records.append(CropRecord(photo_id, split, cat, record, det.width, det.height, det.detections, crop,
                                  mask=crop_mask(det.detections, crop, cats.street2shop_to_modanet.get(cat, ()))))
    return records


def _stage(pcfg: DictConfig, split: str, subset: str, run_detector: bool, cats: Categories,
           choice: Optional[DetectorChoice], command: Optional[str]) -> Stage:
    root = Path(pcfg.data.street2shop.root)
    inputs = {"annotations": root / "meta" / "json", "photos": root / "images"}
    config = {"split": split, "subset": subset if split == "street" else None, "run_detector": run_detector,
              "category_map": {k: list(v) for k, v in cats.street2shop_to_modanet.items()}}
    if choice is not None:
        inputs["weights"] = choice.weights_file
        config["detector_cfg"] = detector_identity(choice.cfg)
        if choice.cfg.DETRET.DETECT.MASKS:
            config["masks"] = True
    stage_dir = RunLayout(pcfg.run_dir).detect(split, subset)
    return Stage(stage_dir, stage_dir.name, config=config, inputs=inputs, command=command, pipeline_config=pcfg)


def require_masks(stage_dir: Path) -> None:
    """Refuse a detect stage that did not record masks (mask crops need them)."""
    from ..runs.manifest import read_manifest

    manifest = read_manifest(stage_dir)
    if manifest is None or not manifest.config.get("masks"):
        raise InputError(f"{stage_dir}: detected without masks; mask crops need a detector with MODEL.MASK_ON True "
                         f"run with DETRET.DETECT.MASKS True (detret --set 'detector.opts=[DETRET.DETECT.MASKS,True]' "
                         f"detect ...)")


def _check_request(pcfg: DictConfig, split: str, subset: str, run_detector: bool) -> None:
    check_choice(split, Split, "split")
    check_choice(subset, Subset, "subset")
    if split == "shop" and not run_detector:
        raise InputError("shop photos are cropped by the detector: run_detector=False applies to street only")
    if not pcfg.data.street2shop.root:
        raise InputError("data.street2shop.root is not set in the pipeline config")


def run_detect(pcfg: DictConfig, split: str, *, subset: str = "test", run_detector: bool = True,
               extra_opts: Optional[List[str]] = None, force: bool = False, command: Optional[str] = None,
               num_processes: int = 1, num_machines: int = 1, machine_rank: int = 0, dist_url: str = "auto") -> Dict:
    """Run the stage; returns the per-category summary ({} on machines other than 0).

    ``num_processes`` > 1 (per machine) or ``num_machines`` > 1: data-parallel through
    Detectron2's ``launch`` (one GPU per process, or gloo processes on CPUs); process r
    of W detects photos r, r + W, ... and appends to its own cache
    ``photos.partial.r<r>.jsonl``; machine 0 then merges every cache into the one artifact
    (several machines need the run directory on a shared filesystem). The artifact is
    sorted, so it does not depend on the split."""
    _check_request(pcfg, split, subset, run_detector)
    device = resolve_device(pcfg.device)
    cats = load_categories(pcfg.data.category_map)
    data = load_street2shop(Path(pcfg.data.street2shop.root), splits=(subset,) if split == "street" else ())
    photos, units = work_items(data, split, subset)
    choice = choose_detector(pcfg, device, list(extra_opts or [])) if run_detector else None
    stage = _stage(pcfg, split, subset, run_detector, cats, choice, command)
    reused = stage.reuse_or_begin(force=force)
    if reused is not None:
        return reused
    if stage.state == "fresh":
        _remove_partials(stage.stage_dir)
    done = read_partials(stage.stage_dir)
    if choice is None:
        _read_sizes(photos, done)
    else:
        todo = [(p, path) for p, path in photos if p not in done]
        parallel = DataParallel(num_processes, num_machines, machine_rank, dist_url)
        logger.info("%s: %d photos, %d cached, %d to detect on %s%s", stage.stage_dir, len(photos), len(done),
                    len(todo), device, f" in {parallel.world} processes" if parallel.world > 1 else "")
        if todo and parallel.world > 1 and choice.cfg.DETRET.DETECT.ENGINE != "torch":
            raise InputError(f"the {choice.cfg.DETRET.DETECT.ENGINE} engine detects in one process; drop "
                             "--num-gpus/--num-machines or use --engine torch")
        if todo and parallel.world > 1:
            done = _detect_parallel(choice, todo, list(cats.modanet), device, stage.stage_dir, parallel)
            if done is None:
                return {}  # machine 0 merges the caches and writes the artifact
        elif todo:
            _detect_here(choice, todo, list(cats.modanet), device, stage.stage_dir, done, split, data)
    records = crop_records(units, done, split, cats, choice)
    write_artifact(stage.stage_dir / ARTIFACT_NAME, records)
    true_boxes = read_shop_boxes(Path(pcfg.data.street2shop.root)) if split == "shop" else None
    summary = stage.finish(summarise(records, true_boxes), {"detections": ARTIFACT_NAME})
    _remove_partials(stage.stage_dir)
    return summary
