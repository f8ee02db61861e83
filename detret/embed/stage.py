"""`detret embed`: descriptors of the gallery (shop crops) and the queries (street crops).

- Gallery: every shop photo of every category, cut by the ``detect-shop`` crops
  (``gallery_crops="detected"``) or whole (``"full"``).
- Queries: the street photos of the test pairs, cut by their annotated box
  (Section 3.3; a zero-size box falls back to the whole photo).
- Models: one checkpoint, or several whose descriptors are concatenated and
  L2-normalised (the paper's ensembles, Section 3.2). Each model reads the crop
  at its own image size and normalisation (from its checkpoint's meta); with
  several ``scales`` a model's descriptors are averaged over the scales and
  L2-normalised before concatenation.
- Photos are decoded and cropped in DataLoader workers; descriptors are
  computed under ``torch.inference_mode`` in batches of same-size images.
- Resumable: descriptors are written in shards of `shard_size` rows
  (``parts/``); a rerun computes only the missing shards.
- Data-parallel: with ``num_processes`` > 1 (or several machines sharing the run
  directory) Detectron2's ``launch`` starts one process per GPU (gloo processes on
  CPUs); process r computes shards r, r + W, ... and machine 0 assembles them: the
  rows of one process's artifact, descriptors equal up to float summation order (a
  CPU process uses its share of the cores).
"""
from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset

from ..data.images import PhotoError, read_rgb
from ..data.street2shop import load_street2shop
from ..retrieval.model import RetrievalNet, load_checkpoint
from ..retrieval.preprocess import crop_rgb, resize_normalise, to_tensor
from ..runs.atomic import atomic_path, atomic_write_json, atomic_write_text
from ..runs.manifest import sha256_file
from ..runs.stage import Stage, require_fresh
from ..utils.device import data_parallel_device, resolve_device, world_size
from ..utils.disk import require_free_space
from ..utils.progress import progress
from .artifact import Row, read_skipped, write_descriptors

logger = logging.getLogger(__name__)


class CropDataset(Dataset):
    """Row index -> the crop as [H, W, 3] uint8, or the reason it cannot be read."""

    def __init__(self, paths: Sequence[Path], boxes: Sequence[Optional[Tuple]]):
        self.paths, self.boxes = list(paths), list(boxes)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Dict:
        try:
            return {"i": i, "crop": crop_rgb(read_rgb(self.paths[i]), self.boxes[i])}
        except PhotoError as exc:
            return {"i": i, "error": exc.reason, "path": str(exc.path)}


def _collate(batch):
    return batch


PRECISIONS = ("fp32", "bf16")


def embed_crops(model: RetrievalNet, crops: List[np.ndarray], scales: Sequence[float], device,
                 precision: str = "fp32") -> torch.Tensor:
    """[n, D] descriptors of one model for a list of crops (averaged over scales, L2-normalised).

    ``precision="bf16"``: channels-last batches under bfloat16 autocast (fast on CPUs with
    AMX/AVX-512-BF16 and on GPUs); descriptors stay float32.
    """
    meta = model.meta
    total = None
    for scale in scales:
        size = max(8, int(round(meta["image_size"] * scale)))
        tensors = [resize_normalise(to_tensor(c), size, meta["resize"], meta["mean"], meta["std"]) for c in crops]
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
                out[idx] = model(batch).float().cpu()
        total = out if total is None else total + out
    return F.normalize(total, dim=1)


def embed_rows(models: List[RetrievalNet], paths: List[Path], boxes: List, parts_dir: Path, side: str, *,
               scales: Sequence[float], device, batch_size: int, workers: int, shard_size: int,
               precision: str = "fp32", rank: int = 0, world: int = 1) -> Tuple[np.ndarray, List[Dict]]:
    """(descriptors [N, D] with zero rows for skipped photos, skipped records); resumable by shard.

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
        shard = np.zeros((stop - start, dim), np.float32)
        shard_skipped = []
        loader = DataLoader(CropDataset(paths[start:stop], boxes[start:stop]), batch_size=batch_size,
                            num_workers=workers, collate_fn=_collate)
        for batch in loader:
            ok = [b for b in batch if "crop" in b]
            shard_skipped += [{"row": start + b["i"], "path": b["path"], "reason": b["error"]}
                              for b in batch if "error" in b]
            if not ok:
                continue
            parts = [embed_crops(m, [b["crop"] for b in ok], scales, device, precision) for m in models]
            desc = F.normalize(torch.cat(parts, dim=1), dim=1).numpy()
            shard[[b["i"] for b in ok]] = desc
        with atomic_path(shard_path) as tmp:
            np.save(tmp, shard)
        atomic_write_text(skip_path, json.dumps(shard_skipped))
        out[start:stop] = shard
        skipped.extend(shard_skipped)
    return out, skipped


def _embed_worker(checkpoints: List[str], device_name: str, parts: str, sides: List[Tuple], scales: List[float],
                  batch_size: int, workers: int, shard_size: int, precision: str) -> None:
    """One process of a data-parallel embedding: its share of the shards of both sides."""
    from detectron2.utils import comm

    rank, world = comm.get_rank(), comm.get_world_size()
    device = data_parallel_device(device_name)
    models = [load_checkpoint(Path(c), device)[0] for c in checkpoints]
    for side, paths, boxes in sides:
        embed_rows(models, [Path(p) for p in paths], boxes, Path(parts), side, scales=scales, device=device,
                   batch_size=batch_size, workers=workers, shard_size=shard_size, precision=precision,
                   rank=rank, world=world)
    comm.synchronize()


def resolve_models(pcfg: DictConfig, names: Optional[Sequence[str]]) -> List[Tuple[str, Path]]:
    """(name, checkpoint) of the models to embed with: --model names/paths, else retrieval.models."""
    run_dir = Path(pcfg.run_dir)
    refs: List[Tuple[str, Optional[str]]] = []
    if names:
        configured = {m.name: m.checkpoint for m in pcfg.retrieval.models}
        for n in names:
            if Path(n).suffix == ".pt":
                if not Path(n).is_file():
                    raise FileNotFoundError(f"{n}: retrieval checkpoint not found")
                refs.append((Path(n).stem, n))
            else:
                refs.append((n, configured.get(n)))
    else:
        refs = [(m.name, m.checkpoint) for m in pcfg.retrieval.models]
    if not refs:
        trained = sorted(p.name[len("retrieval-"):] for p in run_dir.glob("retrieval-*") if p.is_dir())
        raise ValueError("no retrieval model given: pass --model NAME (trained in this run: "
                         f"{', '.join(trained) or 'none'}) or set retrieval.models in the pipeline config")
    out = []
    for name, ckpt in refs:
        if ckpt:
            out.append((name, Path(ckpt)))
        else:
            folder = run_dir / f"retrieval-{name}"
            require_fresh(folder, f"retrieval model '{name}' (detret train-retrieval)")
            out.append((name, folder / "model.pt"))
    return out


def run_embed(pcfg: DictConfig, *, models: Optional[Sequence[str]] = None, gallery_crops: str = "detected",
              scales: Sequence[float] = (1.0,), name: Optional[str] = None, batch_size: int = 32,
              workers: int = 2, shard_size: int = 512, precision: str = "fp32", force: bool = False,
              command: Optional[str] = None, num_processes: int = 1, num_machines: int = 1, machine_rank: int = 0,
              dist_url: str = "auto") -> Dict:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if gallery_crops not in ("detected", "full"):
        raise ValueError(f"gallery crops must be 'detected' or 'full', got {gallery_crops!r}")
    if not pcfg.data.street2shop.root:
        raise ValueError("data.street2shop.root is not set in the pipeline config")
    device = resolve_device(pcfg.device)
    run_dir = Path(pcfg.run_dir)
    chosen = resolve_models(pcfg, models)
    name = name or "+".join(n for n, _ in chosen)
    out = run_dir / f"embed-{name}"
    root = Path(pcfg.data.street2shop.root)
    inputs = {"annotations": root / "meta" / "json", "photos": root / "images"}
    inputs.update({f"model_{i}_{n}": p for i, (n, p) in enumerate(chosen)})
    shop_crops = None
    if gallery_crops == "detected":
        from ..detect.artifact import read_artifact

        require_fresh(run_dir / "detect-shop", "the shop crops (detret detect --split shop)")
        inputs["shop_crops"] = run_dir / "detect-shop" / "detections.jsonl"
        shop_crops = {(r.category, r.photo_id): r for r in read_artifact(inputs["shop_crops"])}
    config = {"models": [n for n, _ in chosen], "gallery_crops": gallery_crops, "scales": list(scales),
              "precision": precision}
    stage = Stage(out, f"embed-{name}", config=config, inputs=inputs, command=command, pipeline_config=pcfg)
    state = stage.begin(force=force)
    if state == "done":
        logger.info("%s: descriptors up to date, reused", out)
        return json.loads((out / "summary.json").read_text())
    parts = out / "parts"
    if state == "fresh" and parts.exists():
        for p in parts.iterdir():
            p.unlink()
    parts.mkdir(parents=True, exist_ok=True)

    data = load_street2shop(root, splits=("test",))
    gallery_rows, gallery_paths, gallery_boxes, skipped_by_detect = [], [], [], []
    for cat in data.categories:
        for s in data.gallery[cat]:
            box, rule = None, "full"
            if shop_crops is not None:
                rec = shop_crops.get((cat, s.photo_id))
                if rec is None or rec.status != "ok":
                    skipped_by_detect.append({"photo_id": s.photo_id, "category": cat,
                                              "reason": rec.reason if rec else "not in the detect-shop artifact"})
                    continue
                box, rule = tuple(rec.crop.box_xyxy), rec.crop.rule
            gallery_rows.append(Row(s.photo_id, s.product_id, cat, "shop", None, rule, box))
            gallery_paths.append(data.photo_path(s.photo_id))
            gallery_boxes.append(box)
    query_rows, query_paths, query_boxes = [], [], []
    for q in data.test_queries:
        query_rows.append(Row(q.photo_id, q.product_id, q.category, "street", q.record,
                              "ground_truth" if q.box_xyxy else "fallback", q.box_xyxy))
        query_paths.append(data.photo_path(q.photo_id))
        query_boxes.append(q.box_xyxy)

    if world_size(num_processes, num_machines) > 1:
        from detectron2.engine import launch

        launch(_embed_worker, max(num_processes, 1), num_machines=num_machines, machine_rank=machine_rank,
               dist_url=dist_url, args=([str(p) for _, p in chosen], str(device), str(parts),
                                        [("gallery", [str(p) for p in gallery_paths], gallery_boxes),
                                         ("queries", [str(p) for p in query_paths], query_boxes)],
                                        list(scales), batch_size, workers, shard_size, precision))
        if machine_rank != 0:
            return {"name": name, "machine_rank": machine_rank}  # machine 0 assembles the shards
    loaded = [load_checkpoint(p, device)[0] for _, p in chosen]
    n_rows, dim = len(gallery_rows) + len(query_rows), sum(m.dim for m in loaded)
    # float32 rows written twice (shards, then the final arrays) before the shards are deleted
    require_free_space(out, 2 * 4 * n_rows * dim, f"{n_rows:,} descriptors of dimension {dim}")
    results = {}
    all_skipped = [{"side": "gallery", **s} for s in skipped_by_detect]
    for side, rows, paths, boxes in (("gallery", gallery_rows, gallery_paths, gallery_boxes),
                                     ("queries", query_rows, query_paths, query_boxes)):
        desc, skipped = embed_rows(loaded, paths, boxes, parts, side, scales=scales, device=device,
                                   batch_size=batch_size, workers=workers, shard_size=shard_size,
                                   precision=precision)
        bad = {s["row"] for s in skipped}
        keep = [i for i in range(len(rows)) if i not in bad]
        write_descriptors(out, side, desc[keep], [rows[i] for i in keep])
        all_skipped += [{"side": side, "photo_id": rows[s["row"]].photo_id, "category": rows[s["row"]].category,
                         "reason": s["reason"]} for s in skipped]
        results[side] = len(keep)
    atomic_write_text(out / "skipped.jsonl", "".join(json.dumps(s, sort_keys=True) + "\n" for s in all_skipped))
    atomic_write_json(out / "models.json", {"scales": list(scales), "precision": precision, "models": [
        {"name": n, "checkpoint": str(p), "sha256": sha256_file(p), "meta": m.meta}
        for (n, p), m in zip(chosen, loaded)]})
    summary = {"name": name, "gallery": results["gallery"], "queries": results["queries"],
               "skipped": len(all_skipped), "dim": int(sum(m.dim for m in loaded)), "models": [n for n, _ in chosen],
               "gallery_crops": gallery_crops}
    atomic_write_json(out / "summary.json", summary)
    stage.complete({"gallery": "gallery.npy", "gallery_rows": "gallery_rows.jsonl", "queries": "queries.npy",
                    "query_rows": "queries_rows.jsonl", "skipped": "skipped.jsonl", "models": "models.json",
                    "summary": "summary.json"})
    for p in parts.iterdir():
        p.unlink()
    parts.rmdir()
    return summary


def _row_key(r: Row) -> tuple:
    return (r.domain, r.category, r.photo_id, r.record)


def run_combine(pcfg: DictConfig, names: Sequence[str], name: str, *, force: bool = False,
                command: Optional[str] = None) -> Dict:
    """An ensemble from descriptor runs already computed: concatenate row-aligned descriptors, L2-normalise.

    Each member keeps its own crops (e.g. Tri DB F with whole shop photos and
    Tri DB C with detected crops, the paper's "Tris"); rows are matched by
    (domain, category, photo, record), and only rows present in every member are kept.
    """
    if len(names) < 2:
        raise ValueError(f"an ensemble needs at least two descriptor runs, got {list(names)}")
    run_dir = Path(pcfg.run_dir)
    folders = [run_dir / f"embed-{n}" for n in names]
    for n, f in zip(names, folders):
        require_fresh(f, f"the descriptors '{n}' (detret embed)")
    out = run_dir / f"embed-{name}"
    inputs = {f"{n}:{side}": f / f"{side}.npy" for n, f in zip(names, folders) for side in ("gallery", "queries")}
    stage = Stage(out, f"embed-{name}", config={"combine": list(names)}, inputs=inputs,
                  command=command, pipeline_config=pcfg)
    if stage.begin(force=force) == "done":
        return json.loads((out / "summary.json").read_text())
    from .artifact import read_descriptors

    counts = {}
    for side in ("gallery", "queries"):
        members = [read_descriptors(f, side) for f in folders]
        keys = [{_row_key(r): i for i, r in enumerate(rows)} for _, rows in members]
        base_rows = members[0][1]
        common = [r for r in base_rows if all(_row_key(r) in k for k in keys[1:])]
        parts = [desc[[k[_row_key(r)] for r in common]] for (desc, _), k in zip(members, keys)]
        combined = F.normalize(torch.from_numpy(np.concatenate(parts, axis=1)), dim=1).numpy()
        write_descriptors(out, side, combined, common)
        counts[side] = len(common)
    # A row missing from any member is missing from the ensemble: the members' skipped rows, once each.
    skipped = {}
    for f in folders:
        for s in read_skipped(f):
            skipped.setdefault((s["side"], s["category"], s["photo_id"]), s)
    summary = {"name": name, "combine": list(names), "gallery": counts["gallery"], "queries": counts["queries"],
               "skipped": len(skipped), "dim": int(combined.shape[1]), "models": list(names),
               "gallery_crops": "per member"}
    atomic_write_text(out / "skipped.jsonl", "".join(json.dumps(skipped[k], sort_keys=True) + "\n"
                                                      for k in sorted(skipped)))
    atomic_write_json(out / "models.json", {"combine": list(names)})
    atomic_write_json(out / "summary.json", summary)
    stage.complete({"gallery": "gallery.npy", "gallery_rows": "gallery_rows.jsonl", "queries": "queries.npy",
                    "query_rows": "queries_rows.jsonl", "summary": "summary.json"})
    return summary
