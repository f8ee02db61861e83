"""`detret detect`: crop every photo of a split, by the paper's policy, into the run directory.

Splits: ``shop`` (the gallery: every shop photo of every category) and
``street`` (the street photos of the ``test`` or ``train`` pairs). Shop photos
are cropped by the detector and :func:`select_crop`; street queries by their
annotated box (Section 3.3), with the detector's output recorded beside it
(for the report's figures) unless ``run_detector=False``.
"""
from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
from detectron2.config import CfgNode
from omegaconf import DictConfig

from ..data.categories import load_categories
from ..data.street2shop import Street2Shop, load_street2shop
from ..runs.atomic import atomic_write_json
from ..runs.stage import Stage, require_fresh
from ..utils.device import data_parallel_device, resolve_device, world_size
from ..utils.progress import counter, progress
from .artifact import ARTIFACT_NAME, PARTIAL_NAME, CropRecord, PhotoDetections, append_partial, read_partial, \
    write_artifact
from .config import build_detector_cfg, check_weights_available
from .crops import ground_truth_crop, select_crop
from .inference import detect_photos, load_detector

logger = logging.getLogger(__name__)

DETECTOR_DIR = "detector"


@dataclass
class DetectorChoice:
    cfg: CfgNode
    weights: Optional[str]
    config_source: Path


def stage_dir_for(run_dir: Path, split: str, subset: str) -> Path:
    return Path(run_dir) / ("detect-shop" if split == "shop" else f"detect-street-{subset}")


def choose_detector(pcfg: DictConfig, device: torch.device, extra_opts: List[str]) -> DetectorChoice:
    """The pipeline's detector: explicit weights with the configured file, else the run's trained one."""
    opts = list(pcfg.detector.opts) + list(extra_opts)
    if pcfg.detector.weights:
        cfg = build_detector_cfg(pcfg.detector.config_file, opts, weights=pcfg.detector.weights, device=str(device))
        check_weights_available(cfg)
        return DetectorChoice(cfg, cfg.MODEL.WEIGHTS, Path(cfg.MODEL.WEIGHTS))
    trained = Path(pcfg.run_dir) / DETECTOR_DIR
    require_fresh(trained, "the trained detector (detret train-detector)")
    cfg = build_detector_cfg(str(trained / "config.yaml"), opts, weights=str(trained / "model_final.pth"),
                             device=str(device))
    return DetectorChoice(cfg, cfg.MODEL.WEIGHTS, trained / "model_final.pth")


def _hashed_cfg_text(cfg: CfgNode) -> str:
    """The detector config as it decides the results: device and batching left out,
    so the same detection on CPU or GPU, or with other batch sizes, counts as the same."""
    c = cfg.clone()
    c.defrost()
    c.MODEL.DEVICE = ""
    c.DETRET.DETECT.BATCH_SIZE = 0
    c.DETRET.DETECT.NUM_WORKERS = 0
    if c.DETRET.DETECT.PRECISION == "fp32":  # the default: left out, so runs from before the key stay valid
        del c.DETRET.DETECT["PRECISION"]
    return c.dump()


def _work_items(data: Street2Shop, split: str, subset: str) -> Tuple[List[Tuple[int, Path]], List[Tuple]]:
    """(unique photos to run the detector on, units to crop: (photo, category, record, box))."""
    units: List[Tuple] = []
    if split == "shop":
        for cat in data.categories:
            units.extend((s.photo_id, cat, None, None) for s in data.gallery[cat])
    else:
        units.extend((q.photo_id, q.category, q.record, q.box_xyxy) for q in data.queries(subset))
    photos = sorted({u[0] for u in units})
    return [(p, data.photo_path(p)) for p in photos], units


def summarise(records: List[CropRecord]) -> Dict[str, Dict]:
    """Per category: photos, skipped, crops by rule, fallback rate, mean score of chosen detections."""
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
    return out


def read_partials(stage_dir: Path) -> Dict[int, PhotoDetections]:
    """Every cache of the stage: one process's ``photos.partial.jsonl`` and those of data-parallel ranks."""
    done: Dict[int, PhotoDetections] = {}
    for path in sorted(Path(stage_dir).glob("photos.partial*.jsonl")):
        done.update(read_partial(path))
    return done


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


def run_detect(
    pcfg: DictConfig,
    split: str,
    *,
    subset: str = "test",
    run_detector: bool = True,
    extra_opts: Optional[List[str]] = None,
    force: bool = False,
    command: Optional[str] = None,
    num_processes: int = 1,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: str = "auto",
) -> Dict:
    """Run the stage; returns the per-category summary.

    ``num_processes`` > 1 (per machine) or ``num_machines`` > 1: data-parallel through
    Detectron2's ``launch`` (one GPU per process, or gloo processes on CPUs); process r
    of W detects photos r, r + W, ... and appends to its own cache
    ``photos.partial.r<r>.jsonl``; machine 0 then merges every cache into the one artifact
    (several machines need the run directory on a shared filesystem). The artifact is
    sorted, so it does not depend on the split."""
    if split not in ("shop", "street"):
        raise ValueError(f"split must be 'shop' or 'street', got {split!r}")
    if split == "shop" and not run_detector:
        raise ValueError("shop photos are cropped by the detector: run_detector=False applies to street only")
    if not pcfg.data.street2shop.root:
        raise ValueError("data.street2shop.root is not set in the pipeline config")
    device = resolve_device(pcfg.device)
    cats = load_categories(pcfg.data.category_map)
    data = load_street2shop(Path(pcfg.data.street2shop.root), splits=(subset,) if split == "street" else ())
    photos, units = _work_items(data, split, subset)
    choice = choose_detector(pcfg, device, list(extra_opts or [])) if run_detector else None
    stage_dir = stage_dir_for(Path(pcfg.run_dir), split, subset)
    root = Path(pcfg.data.street2shop.root)
    inputs = {"annotations": root / "meta" / "json", "photos": root / "images"}
    config = {"split": split, "subset": subset if split == "street" else None, "run_detector": run_detector,
              "category_map": {k: list(v) for k, v in cats.street2shop_to_modanet.items()}}
    if choice is not None:
        inputs["weights"] = choice.config_source
        config["detector_cfg"] = _hashed_cfg_text(choice.cfg)
    stage = Stage(stage_dir, f"detect-{split}" + (f"-{subset}" if split == "street" else ""), config=config,
                  inputs=inputs, command=command, pipeline_config=pcfg)
    state = stage.begin(force=force)
    partial_path = stage_dir / PARTIAL_NAME
    if state == "done":
        logger.info("%s: complete and up to date, reused", stage_dir)
        return json.loads((stage_dir / "summary.json").read_text())
    if state == "fresh":
        for old in stage_dir.glob("photos.partial*.jsonl"):
            old.unlink()
    done = read_partials(stage_dir)
    world = world_size(num_processes, num_machines)
    if choice is not None:
        todo = [(p, path) for p, path in photos if p not in done]
        logger.info("%s: %d photos, %d cached, %d to detect on %s%s", stage_dir, len(photos), len(done), len(todo),
                    device, f" in {world} processes" if world > 1 else "")
        if todo and world > 1:
            from detectron2.engine import launch

            launch(_detect_worker, max(num_processes, 1), num_machines=num_machines, machine_rank=machine_rank,
                   dist_url=dist_url, args=(choice.cfg.dump(), choice.weights, [(p, str(path)) for p, path in todo],
                                            str(stage_dir), list(cats.modanet), str(device)))
            if machine_rank != 0:
                return {}  # machine 0 merges the caches and writes the artifact
            done = read_partials(stage_dir)
            missing = [p for p, _ in todo if p not in done]
            if missing:
                raise RuntimeError(f"{stage_dir}: {len(missing)} photos have no result after the data-parallel run "
                                   f"(e.g. {missing[:5]}); rerun the command to finish them")
        elif todo:
            model = load_detector(choice.cfg, choice.weights, device)

            def on_batch(results: List[PhotoDetections]) -> None:
                append_partial(partial_path, results)
                done.update((r.photo_id, r) for r in results)

            with counter(f"detect {split}", len(todo)) as bar:
                for n_photos in detect_photos(model, choice.cfg, todo, cats.modanet, device, on_batch):
                    bar.update(n_photos)
    else:
        from ..data.images import PhotoError, photo_size

        for p, path in progress(photos, "reading photo sizes"):
            if p in done:
                continue
            try:
                w, h = photo_size(path)
                done[p] = PhotoDetections(p, w, h)
            except PhotoError as exc:
                done[p] = PhotoDetections(p, status="skipped", reason=exc.reason)

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
        records.append(CropRecord(photo_id, split, cat, record, det.width, det.height, det.detections, crop))
    write_artifact(stage_dir / ARTIFACT_NAME, records)
    summary = summarise(records)
    atomic_write_json(stage_dir / "summary.json", summary)
    stage.complete({"detections": ARTIFACT_NAME, "summary": "summary.json"})
    for cache in stage_dir.glob("photos.partial*.jsonl"):
        cache.unlink()
    return summary
