"""`detret embed`: descriptors of the gallery (shop crops) and the queries (street crops).

- Gallery: every shop photo of every category, cut by the ``detect-shop`` crops
  (``gallery_crops="detected"``) or whole (``"full"``).
- Queries: the street photos of the test pairs, cut by their annotated box
  (Section 3.3; a zero-size box falls back to the whole photo).
- Models: one checkpoint, or several whose descriptors are concatenated and
  L2-normalised (the paper's ensembles, Section 3.2); see ``inference.py`` for how
  each model reads a crop.
- Resumable: descriptors are written in shards of `shard_size` rows (``parts/``); a
  rerun computes only the missing shards.
- Data-parallel: with ``num_processes`` > 1 (or several machines sharing the run
  directory) Detectron2's ``launch`` starts one process per GPU (gloo processes on
  CPUs); process r computes shards r, r + W, ... and machine 0 assembles them: the
  rows of one process's artifact, descriptors equal up to float summation order (a
  CPU process uses its share of the cores).

An ensemble of descriptor runs already computed is ``combine.py`` (``combine``).
"""
from __future__ import annotations

import functools
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from omegaconf import DictConfig

from ..config.choices import ShopCrops, check_choice, check_engine
from ..data.boxes import BoxXYXY
from ..data.images import first_readable, read_rgb
from ..data.street2shop import Street2Shop, load_street2shop
from ..errors import InputError, MissingFileError
from ..retrieval.descriptor_model import DescriptorNet, load_descriptor_model, model_sha256
from ..retrieval.foundation import FoundationSpec, materialise
from ..retrieval.foundation.sources import locate
from ..retrieval.onnx_engine import CALIBRATION_CROPS
from ..runs.atomic import atomic_write_json, atomic_write_text
from ..runs.layout import DETECTIONS_FILE, MODEL_FILE, RunLayout
from ..runs.stage import Stage, require_built, require_fresh
from ..utils.device import DataParallel, data_parallel_device, resolve_device
from ..utils.disk import require_free_space
from .artifact import Row, write_descriptors
from ..detect.masks import BOX, CropShape
from .inference import clear_parts, embed_rows

logger = logging.getLogger(__name__)

DESCRIPTOR_OUTPUTS = {"gallery": "gallery.npy", "gallery_rows": "gallery_rows.jsonl", "queries": "queries.npy",
                      "query_rows": "queries_rows.jsonl"}


@dataclass
class Side:
    """The rows of one side (gallery or queries) and where to read each: photo path and crop box."""

    name: str
    domain: str  # of its photos: "shop" (gallery) or "street" (queries), which a two-stream network's stream embeds
    rows: List[Row] = field(default_factory=list)
    paths: List[Path] = field(default_factory=list)
    boxes: List[Optional[BoxXYXY]] = field(default_factory=list)
    masks: List[Optional[Dict]] = field(default_factory=list)   # each crop's mask, where recorded (mask crops)

    def add(self, row: Row, path: Path, mask: Optional[Dict] = None) -> None:
        self.rows.append(row)
        self.paths.append(path)
        self.boxes.append(row.box_xyxy)
        self.masks.append(mask)


def _kept_foundation(layout: RunLayout, spec: FoundationSpec, weights: Optional[Path]) -> Path:
    """The run's folder of the foundation model (``foundation/<name>-<identity>/``): made once per weights, so
    that other weights under the same name never replace the ones an earlier descriptor run used."""
    staging = layout.foundation(f".{spec.safe_name}.staging-{os.getpid()}")
    made = materialise(spec, locate(spec, weights), staging)
    kept = layout.foundation(f"{spec.safe_name}-{made.identity[:12]}")
    if kept.is_dir():
        shutil.rmtree(staging)
    else:
        staging.rename(kept)
    return kept


def resolve_models(pcfg: DictConfig, names: Optional[Sequence[str]], weights: Optional[Path] = None
                   ) -> List[Tuple[str, Path]]:
    """(name, model path) of the models to embed with: --model names, checkpoints or foundation models
    (``open_clip:...``, ``timm:...``, ``hf:...``, read from ``weights`` when given), else retrieval.models.

    A model trained in this run is taken as it is (its files intact), even if the photos it was
    trained on changed since: the descriptors depend on the checkpoint's content, which they record."""
    layout = RunLayout(pcfg.run_dir)
    configured = {m.name: m.checkpoint for m in pcfg.retrieval.models}
    foundations = [n for n in names or [] if FoundationSpec.looks_like(n)]
    if weights is not None and len(foundations) != 1:
        raise InputError(f"--weights {weights}: give exactly one foundation model (--descriptor), not "
                         f"{len(foundations)}")
    refs: List[Tuple[str, Optional[str]]] = []
    for n in names or []:
        if FoundationSpec.looks_like(n):
            spec = FoundationSpec.parse(n)
            refs.append((spec.safe_name, str(_kept_foundation(layout, spec, weights))))
        elif Path(n).suffix == ".pt":
            if not Path(n).is_file():
                raise MissingFileError(f"{n}: retrieval checkpoint not found")
            refs.append((Path(n).stem, n))
        else:
            refs.append((n, configured.get(n)))
    refs = refs or [(m.name, m.checkpoint) for m in pcfg.retrieval.models]
    if not refs:
        raise InputError("no retrieval model given: pass --model NAME (trained in this run: "
                         f"{', '.join(layout.trained_models()) or 'none'}), --descriptor LIBRARY:NAME or set "
                         "retrieval.models in the pipeline config")
    out = []
    for name, ckpt in refs:
        if not ckpt:
            require_built(layout.retrieval(name), f"retrieval model '{name}' (detret train-retrieval)")
            ckpt = layout.retrieval(name) / MODEL_FILE
        out.append((name, Path(ckpt)))
    return out


def descriptor_sides(data: Street2Shop, shop_crops: Optional[Dict], whole_shop: bool = False,
                     street_masks: Optional[Dict] = None) -> Tuple[Side, Side, List[Dict]]:
    """(gallery, queries, gallery photos the detect stage skipped); ``shop_crops`` None: whole shop photos;
    ``whole_shop``: whole shop photos, with the masks of ``shop_crops`` (mask crops of whole photos).
    ``street_masks``: (category, photo id, record) -> the query's mask (the detect-street artifact's)."""
    gallery, queries, skipped = Side("gallery", "shop"), Side("queries", "street"), []
    for cat in data.categories:
        for s in data.gallery[cat]:
            box, rule, mask = None, "full", None
            if shop_crops is not None:
                rec = shop_crops.get((cat, s.photo_id))
                if rec is None or rec.status != "ok":
                    skipped.append({"photo_id": s.photo_id, "category": cat,
                                    "reason": rec.reason if rec else "not in the detect-shop artifact"})
                    continue
                mask = rec.mask
                if not whole_shop:
                    box, rule = tuple(rec.crop.box_xyxy), rec.crop.rule
            gallery.add(Row(s.photo_id, s.product_id, cat, "shop", None, rule, box, s.products),
                        data.photo_path(s.photo_id), mask)
    for q in data.test_queries:
        queries.add(Row(q.photo_id, q.product_id, q.category, "street", q.record,
                        "ground_truth" if q.box_xyxy else "fallback", q.box_xyxy), data.photo_path(q.photo_id),
                    (street_masks or {}).get((q.category, q.photo_id, q.record)))
    return gallery, queries, skipped


def _embed_worker(checkpoints: List[str], device_name: str, parts: str, sides: List[Tuple], scales: List[float],
                  batch_size: int, workers: int, shard_size: int, precision: str, shape: Tuple[str, str]) -> None:
    """One process of a data-parallel embedding: its share of the shards of both sides."""
    from detectron2.utils import comm

    rank, world = comm.get_rank(), comm.get_world_size()
    device = data_parallel_device(device_name)
    models = [load_descriptor_model(Path(c), device) for c in checkpoints]
    for side, domain, paths, boxes, masks in sides:
        embed_rows(models, [Path(p) for p in paths], boxes, Path(parts), side, scales=scales, device=device,
                   batch_size=batch_size, workers=workers, shard_size=shard_size, precision=precision,
                   rank=rank, world=world, domain=domain, masks=masks, shape=CropShape(*shape))
    comm.synchronize()


def _launch_workers(chosen: List[Tuple[str, Path]], device, parts: Path, sides: Sequence[Side], opts: Dict,
                    parallel: DataParallel) -> None:
    parallel.launch(_embed_worker, [str(p) for _, p in chosen], str(device), str(parts),
                    [(s.name, s.domain, [str(p) for p in s.paths], s.boxes, s.masks) for s in sides],
                    list(opts["scales"]), opts["batch_size"], opts["workers"], opts["shard_size"], opts["precision"],
                    (opts["shape"].shape, opts["shape"].fill))


def _write_sides(out: Path, loaded: List[DescriptorNet], sides: Sequence[Side], parts: Path, device,
                 opts: Dict) -> Tuple[Dict[str, int], List[Dict]]:
    """Each side's descriptors and rows (unreadable photos left out); (rows kept per side, skipped records)."""
    kept, skipped_all = {}, []
    for side in sides:
        desc, skipped = embed_rows(loaded, side.paths, side.boxes, parts, side.name, device=device, domain=side.domain,
                                   masks=side.masks, **opts)
        bad = {s["row"] for s in skipped}
        keep = [i for i in range(len(side.rows)) if i not in bad]
        write_descriptors(out, side.name, desc[keep], [side.rows[i] for i in keep])
        skipped_all += [{"side": side.name, "photo_id": side.rows[s["row"]].photo_id,
                         "category": side.rows[s["row"]].category, "reason": s["reason"]} for s in skipped]
        kept[side.name] = len(keep)
    return kept, skipped_all


def _first_crops(side: Side, shape: CropShape, n: int = CALIBRATION_CROPS) -> List[np.ndarray]:
    """The first ``n`` readable crops of a side, cut as the descriptors read them (int8 calibration)."""
    return first_readable(zip(side.paths, side.boxes, side.masks), n,
                          lambda row: shape.cut(read_rgb(Path(row[0])), row[1], row[2]))


def _stage(pcfg: DictConfig, chosen: List[Tuple[str, Path]], name: str, gallery_crops: str,
           scales: Sequence[float], precision: str, command: Optional[str], shape: CropShape = BOX,
           engine: str = "torch") -> Stage:
    layout = RunLayout(pcfg.run_dir)
    root = Path(pcfg.data.street2shop.root)
    inputs = {"annotations": root / "meta" / "json", "photos": root / "images"}
    inputs.update({f"model_{i}_{n}": p for i, (n, p) in enumerate(chosen)})
    if gallery_crops == "detected" or shape.shape == "mask":
        require_fresh(layout.detect_shop, "the shop crops (detret detect --split shop)")
        inputs["shop_crops"] = layout.shop_detections
    config = {"models": [n for n, _ in chosen], "gallery_crops": gallery_crops, "scales": list(scales),
              "precision": precision, **({"engine": engine} if engine != "torch" else {})}
    if shape.shape == "mask":   # the queries' masks: the detections recorded beside their boxes
        street = layout.detect("street", "test")
        require_fresh(street, "the street photos' detections (detret detect --split street): mask crops of the "
                              "queries need the detector's masks")
        inputs["street_crops"] = street / DETECTIONS_FILE
        config.update({"crop": shape.shape, "mask_fill": shape.fill})
    return Stage(layout.embed(name), layout.embed(name).name, config=config, inputs=inputs, command=command,
                 pipeline_config=pcfg)


def _read_crops(stage: Stage, shape: CropShape) -> Tuple[Optional[Dict], Optional[Dict]]:
    """(shop crop records by (category, photo id), street masks by (category, photo id, record)) as needed."""
    from ..detect.artifact import read_artifact

    shop = street = None
    if shape.shape == "mask":
        from ..detect.stage import require_masks

        for key in ("shop_crops", "street_crops"):
            require_masks(stage.input_paths[key].parent)
    if "shop_crops" in stage.input_paths:
        shop = {(r.category, r.photo_id): r for r in read_artifact(stage.input_paths["shop_crops"])}
    if "street_crops" in stage.input_paths:
        street = {(r.category, r.photo_id, r.record): r.mask for r in read_artifact(stage.input_paths["street_crops"])}
    return shop, street


def run_embed(pcfg: DictConfig, *, models: Optional[Sequence[str]] = None, gallery_crops: str = "detected",
              scales: Sequence[float] = (1.0,), name: Optional[str] = None, batch_size: int = 32,
              workers: int = 2, shard_size: int = 512, precision: str = "fp32", force: bool = False,
              command: Optional[str] = None, num_processes: int = 1, num_machines: int = 1, machine_rank: int = 0,
              dist_url: str = "auto", weights: Optional[Path] = None, crop: CropShape = BOX,
              engine: str = "torch") -> Dict:
    check_engine(engine, precision, "embed")
    check_choice(gallery_crops, ShopCrops, "gallery crops")
    if not pcfg.data.street2shop.root:
        raise InputError("data.street2shop.root is not set in the pipeline config")
    device = resolve_device(pcfg.device)
    chosen = resolve_models(pcfg, models, weights)
    name = name or "+".join(n for n, _ in chosen)
    stage = _stage(pcfg, chosen, name, gallery_crops, scales, precision, command, crop, engine)
    reused = stage.reuse_or_begin(force=force)
    if reused is not None:
        return reused
    out, parts = stage.stage_dir, stage.stage_dir / "parts"
    if stage.state == "fresh":
        clear_parts(parts, remove_folder=False)
    parts.mkdir(parents=True, exist_ok=True)
    shop_crops, street_masks = _read_crops(stage, crop)
    gallery, queries, skipped_by_detect = descriptor_sides(
        load_street2shop(Path(pcfg.data.street2shop.root), splits=("test",)), shop_crops,
        whole_shop=gallery_crops == "full", street_masks=street_masks)
    opts = {"scales": scales, "batch_size": batch_size, "workers": workers, "shard_size": shard_size,
            "precision": precision, "shape": crop}
    parallel = DataParallel(num_processes, num_machines, machine_rank, dist_url)
    if parallel.world > 1 and engine != "torch":
        raise InputError(f"the {engine} engine embeds in one process; drop --num-gpus/--num-machines or use "
                         "--engine torch")
    if parallel.world > 1:
        _launch_workers(chosen, device, parts, (gallery, queries), opts, parallel)
        if machine_rank != 0:
            return {"name": name, "machine_rank": machine_rank}  # machine 0 assembles the shards
    calibration = functools.partial(_first_crops, gallery, crop)
    loaded = [load_descriptor_model(p, device, engine, precision, calibration, "the run's gallery crops")
              for _, p in chosen]
    n_rows, dim = len(gallery.rows) + len(queries.rows), sum(m.dim for m in loaded)
    # float32 rows written twice (shards, then the final arrays) before the shards are deleted
    require_free_space(out, 2 * 4 * n_rows * dim, f"{n_rows:,} descriptors of dimension {dim}")
    kept, skipped = _write_sides(out, loaded, (gallery, queries), parts, device, opts)
    skipped = [{"side": "gallery", **s} for s in skipped_by_detect] + skipped
    atomic_write_text(out / "skipped.jsonl", "".join(json.dumps(s, sort_keys=True) + "\n" for s in skipped))
    shape = {"crop": crop.shape, "mask_fill": crop.fill} if crop.shape == "mask" else {}
    shape.update({"engine": engine} if engine != "torch" else {})
    atomic_write_json(out / "models.json", {"scales": list(scales), "precision": precision, **shape, "models": [
        {"name": n, "checkpoint": str(p), "sha256": model_sha256(p), "meta": m.meta}
        for (n, p), m in zip(chosen, loaded)]})
    summary = {"name": name, "gallery": kept["gallery"], "queries": kept["queries"], "skipped": len(skipped),
               "dim": int(dim), "models": [n for n, _ in chosen], "gallery_crops": gallery_crops, **shape,
               "masked": {s.name: sum(m is not None for m in s.masks) for s in (gallery, queries)}}
    stage.finish(summary, {**DESCRIPTOR_OUTPUTS, "skipped": "skipped.jsonl", "models": "models.json"})
    clear_parts(parts, remove_folder=True)
    return summary
