"""`detret whiten`: a descriptor run whitened and reduced to d' dimensions (Radenovic et al., TPAMI 2018).

Learned once, from the **training split** (never from the test split a run is evaluated on), through the
run's own descriptor models (:class:`~detret.embed.describer.Describer`: every member of an ensemble, its
scales and crops):

- ``lw``, learned whitening (cnnimageretrieval-pytorch's ``whitenlearn``): from matching pairs, a training
  street photo (its annotated box) and a shop photo of the same product (its detected crop, or the whole
  photo where the run reads whole shop photos). m = the mean of the street descriptors; S = the covariance
  of the pairs' differences; P1 = L^-1 with S = L L^T (Cholesky); the eigenvectors of the covariance of
  P1 (x - m) over both sides, by decreasing eigenvalue, rotate it: P = E^T P1. Matching pairs come close,
  the directions that vary most between products are kept first.
- ``pca``, PCA whitening (``pcawhitenlearn``): m the mean and E, l the eigenvectors and eigenvalues of the
  covariance of the same training descriptors of both domains; P = diag(l)^-1/2 E^T.

Both add ``ridge`` x mean eigenvalue to the matrix they invert (S, or the covariance), so that fewer
training pairs than dimensions still give a usable projection. A descriptor x becomes
normalise(P[:d'] (x - m)). The formulas are :mod:`detret.embed.whitening`; this module is the stage.

The result is a descriptor run like any other (``embed-<name>/``: the source run's descriptors whitened, no
photo read again) that ``search``, ``eval``, ``catalogue create``, ``query`` and ``serve`` use as they use
the source: its ``models.json`` is ``{"whiten": {"of": <run>, "file": "whitening.npz", "sha256", "method",
"dim"}}`` and ``whitening.npz`` holds ``mean`` [D] float32, ``projection`` [d', D] float32 and ``method``. The
descriptor tree of a whitened run (``describer.py``) applies it after the source's descriptors, and its
identity includes the file's hash.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
from omegaconf import DictConfig

from ..config.choices import WhitenMethod, check_choice
from ..data.images import PhotoError, read_rgb
from ..errors import InputError
from ..runs.atomic import atomic_path, atomic_write_json, atomic_write_text
from ..runs.layout import RunLayout
from ..runs.manifest import sha256_file
from ..runs.stage import Stage, require_fresh
from .artifact import read_descriptors, read_skipped, write_descriptors
from .describer import Describer, spec_of_embed_run
from .stage import DESCRIPTOR_OUTPUTS
from .whitening import apply_whitening, learn_lw, learn_pca

logger = logging.getLogger(__name__)

WHITENING_FILE = "whitening.npz"
BATCH = 16


def _training_pairs(pcfg: DictConfig, max_pairs: int, seed: int):
    """(street items, shop items) of up to ``max_pairs`` training pairs: each training street photo with one
    shop photo of its product (seeded choice)."""
    from ..data.street2shop import load_street2shop
    from ..retrieval.data import build_training_set, load_shop_boxes

    layout = RunLayout(pcfg.run_dir)
    boxes = load_shop_boxes(layout.shop_detections) if layout.shop_detections.exists() else None
    tset = build_training_set(load_street2shop(Path(pcfg.data.street2shop.root), splits=("train",)), boxes,
                              val_fraction=0.0, seed=seed)
    rng = np.random.default_rng(seed)
    queries = [tset.train_queries[i] for i in sorted(rng.permutation(len(tset.train_queries))[:max_pairs])]
    shop = [tset.shop[int(rng.choice(tset.shop_by_product[q.product]))] for q in queries]
    return queries, shop


def _describe(describer, items, side: str) -> Tuple[np.ndarray, List[int]]:
    """Descriptors of the readable items and their positions."""
    out, kept = [], []
    for start in range(0, len(items), BATCH):
        photos, boxes = [], []
        for i, item in enumerate(items[start:start + BATCH], start=start):
            try:
                photos.append(read_rgb(item.path))
            except PhotoError as exc:
                logger.warning("whiten: %s", exc)
                continue
            boxes.append(item.box_xyxy)
            kept.append(i)
        if photos:
            out.append(describer.describe(photos, boxes, side))
    return (np.concatenate(out) if out else np.zeros((0, describer.dim), np.float32)), kept


def learn(pcfg: DictConfig, run: str, method: str, *, max_pairs: int, ridge: float, device) -> Dict:
    """{"mean", "projection", "pairs"}: the whitening of descriptor run ``run`` learned on training pairs."""
    describer = Describer(spec_of_embed_run(Path(pcfg.run_dir), run), device)
    queries, shop = _training_pairs(pcfg, max_pairs, int(pcfg.retrieval.train.seed))
    street, kept_q = _describe(describer, queries, "query")
    gallery, kept_s = _describe(describer, shop, "gallery")
    both = sorted(set(kept_q) & set(kept_s))
    street = street[[kept_q.index(i) for i in both]]
    gallery = gallery[[kept_s.index(i) for i in both]]
    if len(both) < 2:
        raise InputError(f"whiten {run}: {len(both)} readable training pairs; whitening needs at least 2")
    mean, projection = learn_lw(street, gallery, ridge) if method == "lw" else \
        learn_pca(np.vstack([street, gallery]), ridge)
    return {"mean": mean, "projection": projection, "pairs": len(both)}


def run_whiten(pcfg: DictConfig, run: str, *, method: str = "lw", dim: Optional[int] = None,
               reduce: Optional[int] = None, name: Optional[str] = None, max_pairs: int = 5000, ridge: float = 0.1,
               device="cpu", force: bool = False, command: Optional[str] = None) -> Dict:
    """The whitened descriptor run ``name`` (default ``<run>-<method><dim>``) of ``run``, of dimension ``dim``
    or the run's divided by ``reduce`` (default: 256)."""
    check_choice(method, WhitenMethod, "--method")
    if dim is not None and reduce is not None:
        raise InputError("give --dim or --reduce, not both")
    layout = RunLayout(pcfg.run_dir)
    source = layout.embed(run)
    require_fresh(source, f"the descriptors '{run}' (detret embed)")
    full_dim = read_descriptors(source, "queries")[0].shape[1]
    dim = max(1, full_dim // reduce) if reduce else (256 if dim is None else dim)
    if not 1 <= dim <= full_dim:
        raise InputError(f"--dim {dim}: must be between 1 and the dimension of '{run}', {full_dim}")
    name = name or f"{run}-{method}{dim}"
    settings = {"whiten": run, "method": method, "dim": dim, "max_pairs": max_pairs, "ridge": ridge}
    stage = Stage(layout.embed(name), layout.embed(name).name, config=settings,
                  inputs={f"{run}:{s}": source / f"{s}.npy" for s in ("gallery", "queries")}, command=command,
                  pipeline_config=pcfg)
    reused = stage.reuse_or_begin(force=force)
    if reused is not None:
        return reused
    return stage.finish(_write(pcfg, stage.stage_dir, run, name, settings, device),
                        {**DESCRIPTOR_OUTPUTS, "skipped": "skipped.jsonl", "models": "models.json",
                         "whitening": WHITENING_FILE})


def _write(pcfg: DictConfig, out: Path, run: str, name: str, settings: Dict, device) -> Dict:
    source = RunLayout(pcfg.run_dir).embed(run)
    learned = learn(pcfg, run, settings["method"], max_pairs=settings["max_pairs"], ridge=settings["ridge"],
                    device=device)
    mean, projection = learned["mean"], learned["projection"][:settings["dim"]]
    with atomic_path(out / WHITENING_FILE) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, mean=mean, projection=projection, method=np.array(settings["method"]))
    counts = {}
    for side in ("gallery", "queries"):
        descriptors, rows = read_descriptors(source, side)
        write_descriptors(out, side, apply_whitening(descriptors, mean, projection), rows)
        counts[side] = len(rows)
    skipped = read_skipped(source)
    atomic_write_text(out / "skipped.jsonl", "".join(json.dumps(r, sort_keys=True) + "\n" for r in skipped))
    atomic_write_json(out / "models.json", {"whiten": {"of": run, "file": WHITENING_FILE,
                                                       "sha256": sha256_file(out / WHITENING_FILE),
                                                       "method": settings["method"], "dim": settings["dim"]}})
    return {"name": name, "whiten": run, "method": settings["method"], "dim": settings["dim"],
            "pairs": learned["pairs"], "gallery": counts["gallery"], "queries": counts["queries"],
            "skipped": len(skipped), "models": [run], "gallery_crops": "as " + run}
