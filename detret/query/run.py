"""`detret query`: one photo against a built run (detect -> embed -> search in its category).

The photo goes through exactly what a street query of the run went through:

- crop: the given box (clipped, like an annotated street box), or else the run's
  detector and the crop policy of ``detect --split shop`` (the best detection of
  a label mapped to the category, whole photo as fallback);
- descriptor: the descriptor run's tree (``embed/describer.py``): its models, each
  at its image size and scales, L2-normalised and concatenated; for an ensemble
  made with ``combine``, the members' descriptors concatenated and
  L2-normalised, recursively, as ``run_combine`` does;
- search: the category's FAISS index saved by ``search <run>``, ties broken by
  gallery row as everywhere else.

So a test street photo queried with its annotated box gets the ranking that
``search`` wrote for it (tested).
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from omegaconf import DictConfig

from ..data.boxes import BoxXYXY
from ..data.categories import load_categories
from ..data.images import read_rgb
from ..data.street2shop import PHOTO_NAME, load_street2shop
from ..detect.crops import Crop, Detection, given_box_crop, select_crop
from ..embed.artifact import read_descriptors
from ..embed.describer import Describer, spec_of_embed_run
from ..config.choices import EngineChoice
from ..errors import InputError
from ..runs.layout import METRICS_FILE, RunLayout
from ..search.rerank import split_reranked
from ..runs.stage import require_fresh, stage_status
from ..utils.device import resolve_device


@dataclass
class QueryResult:
    photo: Path
    category: str
    run: str
    crop: Crop
    detections: List[Detection] = field(default_factory=list)
    # (rank from 1, gallery photo id, product id, score, shop photo path, the shop crop box or None)
    results: List[Tuple[int, int, int, float, Path, Optional[BoxXYXY]]] = field(default_factory=list)

    def to_json(self) -> Dict:
        return {"photo": str(self.photo), "category": self.category, "run": self.run,
                "crop": {"box_xyxy": [round(float(v), 2) for v in self.crop.box_xyxy], "rule": self.crop.rule},
                "results": [{"rank": r, "photo_id": p, "product_id": pid, "score": round(s, 6), "path": str(path),
                             "crop_box_xyxy": list(box) if box else None}
                            for r, p, pid, s, path, box in self.results]}


def default_run(run_dir: Path) -> str:
    """The evaluated descriptor run with the best mean mAP that has a finished search (a re-ranked run has
    no index to query a new photo with: not one of them)."""
    layout = RunLayout(run_dir)
    metrics_path = layout.eval / METRICS_FILE
    searched = [n for n in layout.searched_runs() if stage_status(layout.search(n)).state == "done"
                and not split_reranked(n)[1]]
    if not searched:
        raise InputError(f"{run_dir}: no finished search to query; run `detret search <name>` first")
    if metrics_path.is_file():
        metrics = json.loads(metrics_path.read_text())
        ranked = [n for n in searched if n in metrics]
        if ranked:
            return max(ranked, key=lambda n: metrics[n]["mean_over_categories"]["mAP"])
    if len(searched) == 1:
        return searched[0]
    raise InputError(f"{run_dir}: several searched runs ({', '.join(searched)}) and no evaluation to pick the best; "
                     "choose one with --run")


def detect_crop(pcfg: DictConfig, photo: Path, category: str, size_wh: Tuple[int, int], device: torch.device,
                masks: bool = False, engine: Optional[EngineChoice] = None) -> Tuple[Crop, List[Detection]]:
    """The run's detector on one photo (recording masks: ``masks``; run by ``engine``, default the config's),
    then the shop photos' crop policy for ``category``."""
    from ..detect.config import choose_detector
    from ..detect.engine import open_detector
    from ..detect.inference import detect_photos

    cats = load_categories(pcfg.data.category_map)
    opts = ["DETRET.DETECT.MASKS", "True"] if masks else []
    if engine is not None:
        opts += ["DETRET.DETECT.ENGINE", engine.engine, "DETRET.DETECT.PRECISION", engine.detector]
    choice = choose_detector(pcfg, device, opts)
    model = open_detector(choice.cfg, choice.weights, device, functools.partial(_gallery_photos, pcfg),
                          "the dataset's shop photos")
    found: List = []
    for _ in detect_photos(model, choice.cfg, [(0, photo)], cats.modanet, device, found.extend):
        pass
    if found[0].status != "ok":
        raise InputError(f"{photo}: {found[0].reason}")
    dets = found[0].detections
    crop = select_crop(dets, category, cats.street2shop_to_modanet, size_wh,
                       objectness_thresh=float(choice.cfg.DETRET.CROP.OBJECTNESS_THRESH),
                       policy=choice.cfg.DETRET.CROP.POLICY)
    return crop, dets


def _gallery_photos(pcfg: DictConfig, n: int = 64) -> List[np.ndarray]:
    """The first ``n`` shop photos of the dataset: what traces and calibrates the onnxruntime engine."""
    from ..detect.engine import photos_reader
    from ..detect.stage import gallery_paths

    return photos_reader(gallery_paths(load_street2shop(Path(pcfg.data.street2shop.root), splits=())))(n)


def run_query(pcfg: DictConfig, photo: Path, category: str, *, box: Optional[BoxXYXY] = None, run: Optional[str] = None,
              k: int = 10, engine: Optional[EngineChoice] = None) -> QueryResult:
    if k < 1:
        raise InputError(f"k must be at least 1, got {k}")
    from ..search.faiss_lib import faiss
    from ..search.index import search
    from ..search.stage import INDEX_DIR, index_file_name

    run_dir = Path(pcfg.run_dir)
    run = run or default_run(run_dir)
    layout = RunLayout(run_dir)
    embed_dir, search_dir = layout.embed(run), layout.search(run)
    require_fresh(embed_dir, f"the descriptors '{run}' (detret embed)")
    require_fresh(search_dir, f"the search of '{run}' (detret search {run})")
    _, gallery_rows = read_descriptors(embed_dir, "gallery")
    categories = sorted({r.category for r in gallery_rows})
    if category not in categories:
        raise InputError(f"unknown category {category!r} for run '{run}': its gallery has {', '.join(categories)}")
    device = resolve_device(pcfg.device)
    photo = Path(photo)
    rgb = read_rgb(photo)  # PhotoError (a ValueError) names the file and the problem
    size_wh = (rgb.shape[1], rgb.shape[0])
    detections: List[Detection] = []
    spec = spec_of_embed_run(run_dir, run)
    describer = Describer(spec.with_engine(engine.engine, engine.precision) if engine else spec, device,
                          functools.partial(_gallery_photos, pcfg))
    if box is not None:
        crop = given_box_crop(box, size_wh)
        if crop is None:
            raise InputError(f"--box {list(box)} is empty inside {photo} ({size_wh[0]}x{size_wh[1]} px)")
    else:
        crop, detections = detect_crop(pcfg, photo, category, size_wh, device, describer.spec.needs_masks(), engine)
    mask = detections[crop.detection].mask if crop.detection is not None else None
    descriptor = describer.describe([rgb], [crop.box_xyxy], "query", [mask])[0]

    rows = [r for r in gallery_rows if r.category == category]  # the index's order (search stage)
    index = faiss.read_index(str(search_dir / INDEX_DIR / index_file_name(category)))
    if index.ntotal != len(rows) or index.d != descriptor.shape[0]:
        raise InputError(f"{search_dir}: index of {category} ({index.ntotal} x {index.d}) does not match the "
                         f"descriptors ({len(rows)} x {descriptor.shape[0]}); rerun `detret search {run} --force`")
    scores, ids = search(index, descriptor[None], k)
    root = Path(pcfg.data.street2shop.root)
    results = []
    for rank, (j, s) in enumerate(zip(ids[0], scores[0]), start=1):
        if j < 0:
            break
        r = rows[j]
        results.append((rank, r.photo_id, r.product_id, float(s), root / "images" / PHOTO_NAME.format(photo_id=r.photo_id),
                        tuple(r.box_xyxy) if r.box_xyxy else None))
    return QueryResult(photo, category, run, crop, detections, results)
