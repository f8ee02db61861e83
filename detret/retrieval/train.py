"""`detret train-retrieval`: the GeM network trained with the triplet loss or the AP loss.

One epoch:

1. (triplet with offline negatives, and AP) mine hard negatives: embed the
   training shop crops and street crops with the current model; keep, per
   query, the `mine_k` most similar shop crops of its category showing another
   product (Gajic & Baldrich use 25);
2. in seeded random batches of `batch_size` queries mixing categories, build
   the images of the loss, and take one optimiser step with multistage
   back-propagation:
   - triplet, offline: (query, a positive shop crop, a mined negative) per query;
   - triplet, batch: (query, positive) per query, each query's negative the
     hardest positive of another product in the batch (VSE++-style max);
   - AP: the batch's queries ranked against the batch's shop crops (each
     query's positive and `ap_negatives` mined negatives);
3. validation mAP (eq. 4, per category then averaged) on the held-out
   training products; the best epoch's weights are ``model.pt``.

Run folder ``<run_dir>/retrieval-<name>/``: ``model.pt`` (best, self-describing),
``checkpoint_last.pt`` (resume state, written every epoch), ``metrics.json``
(one record per epoch, epoch -1 is the untrained network), ``manifest.json``.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from ..data.images import PhotoError
from ..data.street2shop import load_street2shop
from ..evaluate.metrics import full_gallery_ap
from ..runs.atomic import atomic_write_json
from ..runs.stage import Stage, require_fresh
from ..utils.device import resolve_device, world_size
from ..utils.progress import progress
from .data import CropItem, CropReader, TrainingSet, batches, build_training_set, load_shop_boxes
from .losses import ap_loss, hardest_negative_triplet_loss, triplet_loss
from .model import (RetrievalNet, build_retrieval_net, calibrate_batchnorm, load_checkpoint, save_checkpoint,
                    set_batchnorm_eval)
from .multistage import embed_images, multistage_backward

logger = logging.getLogger(__name__)

LOSSES = ("triplet", "ap")
SHOP_CROPS = ("detected", "full")


def default_name(loss: str, shop_crops: str) -> str:
    """The paper's run names: Tri DB C -> "tri-crops", mAP DB F -> "ap-full"."""
    return f"{'tri' if loss == 'triplet' else 'ap'}-{'crops' if shop_crops == 'detected' else 'full'}"


def make_optimizer(model: RetrievalNet, tcfg) -> torch.optim.Optimizer:
    gem_params = [model.pool.p]
    others = [p for n, p in model.named_parameters() if n != "pool.p"]
    groups = [{"params": others, "lr": tcfg.lr},
              {"params": gem_params, "lr": tcfg.lr * model.pool.lr_mult, "weight_decay": 0.0}]
    if tcfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    if tcfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=tcfg.lr, momentum=0.9, weight_decay=tcfg.weight_decay)
    raise ValueError(f"retrieval.train.optimizer must be adam or sgd, got {tcfg.optimizer!r}")


def _read_many(reader: CropReader, items: List[CropItem], device, rng=None):
    """(tensors, indices of the items that could be read)."""
    tensors, ok = [], []
    for i, item in enumerate(items):
        try:
            tensors.append(reader(item, rng).to(device))
            ok.append(i)
        except PhotoError as exc:
            logger.warning("skipping %s", exc)
    return tensors, ok


def embed_items(model: RetrievalNet, reader: CropReader, items: List[CropItem], device, chunk: int,
                desc: str) -> torch.Tensor:
    """Descriptors [N, D] (zeros for unreadable photos), no augmentation, eval mode."""
    was_training = model.training
    model.eval()
    out = torch.zeros(len(items), model.dim)
    for start in progress(range(0, len(items), chunk), desc, unit="chunk"):
        tensors, ok = _read_many(reader, items[start:start + chunk], device)
        if tensors:
            out[[start + i for i in ok]] = embed_images(model, tensors, chunk).float().cpu()
    model.train(was_training)
    if was_training:
        set_batchnorm_eval(model)
    return out


def mine_negatives(model, tset: TrainingSet, reader, device, chunk: int, k: int) -> List[np.ndarray]:
    """Per training query, the indices of its k most similar shop crops of its category, other products."""
    q = embed_items(model, reader, tset.train_queries, device, chunk, "mining: queries")
    s = embed_items(model, reader, tset.shop, device, chunk, "mining: shop")
    cats = np.array([it.category for it in tset.shop])
    products = [it.product for it in tset.shop]
    sims = (q @ s.T).numpy()
    mined = []
    for i, query in enumerate(tset.train_queries):
        candidates = np.flatnonzero((cats == query.category)
                                    & np.array([p != query.product for p in products]))
        order = candidates[np.argsort(-sims[i, candidates], kind="stable")]
        mined.append(order[:k])
    return mined


def validate(model, tset: TrainingSet, reader, device, chunk: int) -> Dict:
    """Validation mAP: held-out products' street crops against the training shop crops of their category."""
    if not tset.val_queries:
        return {"map": None, "per_category": {}, "queries": 0}
    q = embed_items(model, reader, tset.val_queries, device, chunk, "validation: queries")
    s = embed_items(model, reader, tset.shop, device, chunk, "validation: shop")
    cats = np.array([it.category for it in tset.shop])
    products = [it.product for it in tset.shop]
    per_cat: Dict[str, List[float]] = {}
    for i, query in enumerate(tset.val_queries):
        idx = np.flatnonzero(cats == query.category)
        positives = np.array([products[j] == query.product for j in idx])
        if positives.any():
            per_cat.setdefault(query.category, []).append(full_gallery_ap((q[i] @ s[idx].T).numpy(), positives))
    per_category = {c: float(np.mean(v)) for c, v in sorted(per_cat.items())}
    return {"map": float(np.mean(list(per_category.values()))) if per_category else None,
            "per_category": per_category, "queries": sum(len(v) for v in per_cat.values())}


def _calibrate(model, tset: TrainingSet, reader, device, tcfg, rng: np.random.Generator, n_items: int = 256) -> None:
    """BatchNorm statistics from (augmented) training crops, street and shop alike."""
    items = tset.train_queries + tset.shop
    chosen = [items[int(i)] for i in rng.choice(len(items), size=min(n_items, len(items)), replace=False)]
    tensors, _ = _read_many(reader, chosen, device, rng)
    by_shape: Dict[tuple, List[torch.Tensor]] = {}
    for t in tensors:
        by_shape.setdefault(tuple(t.shape), []).append(t)
    batches_ = [torch.stack(v[i:i + 32]) for v in by_shape.values() for i in range(0, len(v), 32)]
    calibrate_batchnorm(model, batches_)


def _item_rng(tcfg, epoch: int, kind: int, index: int) -> np.random.Generator:
    """The generator of one query's sampling or one image's augmentation: a function of
    (seed, epoch, item) alone, so batches do not depend on how they are split across processes."""
    return np.random.default_rng([tcfg.seed, epoch, kind, int(index)])


def _read_one(reader: CropReader, item: CropItem, device, rng) -> Optional[torch.Tensor]:
    try:
        return reader(item, rng).to(device)
    except PhotoError as exc:
        logger.warning("skipping %s", exc)
        return None


def _step(model, optimizer, tset: TrainingSet, batch: np.ndarray, loss: str, tcfg, mined, reader, device,
          epoch: int) -> Optional[float]:
    """One optimiser step on the queries `batch` (this process's share of the global batch).

    Images that cannot be read drop the triplets (or AP items) they belong to. Under
    DistributedDataParallel every process must take part in the step, so an empty
    share still runs a zero-loss backward.
    """
    b_queries, b_pos, b_neg = [], [], []
    for i in batch:
        rq = _item_rng(tcfg, epoch, 0, i)
        q = tset.train_queries[i]
        b_queries.append(i)
        b_pos.append(int(rq.choice(tset.shop_by_product[q.product])))
        if loss == "triplet" and tcfg.negatives == "offline":
            pool = mined[i] if len(mined[i]) else np.array(
                [j for j, s in enumerate(tset.shop) if s.product != q.product])
            b_neg.append(int(rq.choice(pool)))
        elif loss == "ap":
            pool = mined[i]
            b_neg.extend(int(j) for j in rq.choice(pool, size=min(tcfg.ap_negatives, len(pool)), replace=False))
    q_tensors = {i: _read_one(reader, tset.train_queries[i], device, _item_rng(tcfg, epoch, 1, i)) for i in b_queries}
    shop_ids = sorted(set(b_pos) | set(b_neg))
    s_tensors = {j: _read_one(reader, tset.shop[j], device, _item_rng(tcfg, epoch, 2, j)) for j in shop_ids}
    if loss == "triplet" and tcfg.negatives == "offline":
        rows = [(i, p, n) for i, p, n in zip(b_queries, b_pos, b_neg)
                if q_tensors[i] is not None and s_tensors[p] is not None and s_tensors[n] is not None]
        images = [q_tensors[i] for i, _, _ in rows] + [s_tensors[p] for _, p, _ in rows] + \
                 [s_tensors[n] for _, _, n in rows]
        b = len(rows)

        def loss_fn(d):
            return triplet_loss(d[:b], d[b:2 * b], d[2 * b:], tcfg.margin)
    elif loss == "triplet":
        rows = [(i, p) for i, p in zip(b_queries, b_pos) if q_tensors[i] is not None and s_tensors[p] is not None]
        images = [q_tensors[i] for i, _ in rows] + [s_tensors[p] for _, p in rows]
        b = len(rows)
        keys = {p: n for n, p in enumerate(sorted({tset.train_queries[i].product for i, _ in rows}))}
        labels = torch.tensor([keys[tset.train_queries[i].product] for i, _ in rows], device=device)

        def loss_fn(d):
            return hardest_negative_triplet_loss(d[:b], d[b:], labels, tcfg.margin)
    else:
        qs = [i for i in b_queries if q_tensors[i] is not None]
        items = [j for j in shop_ids if s_tensors[j] is not None]
        images = [q_tensors[i] for i in qs] + [s_tensors[j] for j in items]
        b = len(qs)
        labels = torch.tensor([[float(tset.shop[j].product == tset.train_queries[i].product) for j in items]
                               for i in qs], device=device).reshape(b, len(items))

        def loss_fn(d):
            return ap_loss(d[:b] @ d[b:].T, labels, nq=tcfg.ap_bins)[0]
    optimizer.zero_grad(set_to_none=True)
    if b == 0 or len(images) == b:
        if not _is_distributed():
            return None
        blank = torch.zeros(1, 3, 32, 32, device=device)
        (model(blank).sum() * 0.0).backward()  # take part in the gradient all-reduce
        optimizer.step()
        return None
    value = multistage_backward(model, images, loss_fn, tcfg.chunk_size)
    optimizer.step()
    return float(value)


def _is_distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def run_train_retrieval(pcfg: DictConfig, loss: str, shop_crops: str, *, name: Optional[str] = None,
                        force: bool = False, resume: bool = False, command: Optional[str] = None, num_gpus: int = 0,
                        num_machines: int = 1, machine_rank: int = 0, dist_url: str = "auto") -> Dict:
    """The train-retrieval stage; data-parallel over `num_gpus` processes x `num_machines` when > 1
    (Detectron2's ``launch``: NCCL on GPUs, gloo on CPUs)."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    if shop_crops not in SHOP_CROPS:
        raise ValueError(f"shop crops must be one of {SHOP_CROPS}, got {shop_crops!r}")
    if not pcfg.data.street2shop.root:
        raise ValueError("data.street2shop.root is not set in the pipeline config")
    tcfg = pcfg.retrieval.train
    resolve_device(pcfg.device)  # a config asking for a missing GPU fails now
    run_dir = Path(pcfg.run_dir)
    name = name or default_name(loss, shop_crops)
    out = run_dir / f"retrieval-{name}"
    root = Path(pcfg.data.street2shop.root)
    inputs = {"annotations": root / "meta" / "json", "photos": root / "images"}
    if shop_crops == "detected":
        require_fresh(run_dir / "detect-shop", "the shop crops (detret detect --split shop)")
        inputs["shop_crops"] = run_dir / "detect-shop" / "detections.jsonl"
    if tcfg.pretrained and tcfg.backbone_weights:
        inputs["backbone_weights"] = Path(tcfg.backbone_weights)
    train_cfg = OmegaConf.to_container(tcfg, resolve=True)
    config = {"loss": loss, "shop_crops": shop_crops, "train": train_cfg}
    stage = Stage(out, f"train-retrieval-{name}", config=config, inputs=inputs, command=command, pipeline_config=pcfg)
    if resume:
        from ..runs.manifest import read_manifest

        previous = read_manifest(out)
        if previous is None or previous.state != "running" or not (out / "checkpoint_last.pt").is_file():
            raise ValueError(f"{out}: --resume given, but there is no interrupted run with a checkpoint to continue")
    state = stage.begin(force=force)
    if state == "done":
        logger.info("%s: already trained with this config and data, reused", out)
        return json.loads((out / "summary.json").read_text())
    world = world_size(num_gpus, num_machines)
    args = (OmegaConf.to_yaml(pcfg), loss, shop_crops, name, state == "resume")
    if world > 1:
        from detectron2.engine import launch

        launch(_train_worker, max(num_gpus, 1), num_machines=num_machines, machine_rank=machine_rank,
               dist_url=dist_url, args=args)
    else:
        _train_worker(*args)
    if machine_rank != 0:
        return {"name": name, "machine_rank": machine_rank}  # rank 0's machine holds the artifacts
    stage.complete({"model": "model.pt", "metrics": "metrics.json", "summary": "summary.json"})
    return json.loads((out / "summary.json").read_text())


def _train_worker(pcfg_yaml: str, loss: str, shop_crops: str, name: str, resume: bool) -> None:
    """The training itself, in one process of a data-parallel group (or alone)."""
    from detectron2.utils import comm

    pcfg = OmegaConf.create(pcfg_yaml)
    tcfg = pcfg.retrieval.train
    rank, world = comm.get_rank(), comm.get_world_size()
    device = resolve_device(pcfg.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", comm.get_local_rank())
    run_dir = Path(pcfg.run_dir)
    out = run_dir / f"retrieval-{name}"
    root = Path(pcfg.data.street2shop.root)
    shop_boxes = load_shop_boxes(run_dir / "detect-shop" / "detections.jsonl") if shop_crops == "detected" else None
    data = load_street2shop(root, splits=("train",))
    tset = build_training_set(data, shop_boxes, val_fraction=tcfg.val_fraction, seed=tcfg.seed)
    if not tset.train_queries:
        raise ValueError(f"{root}: no usable training query (skipped: {tset.skipped})")
    logger.info("%d training queries, %d validation queries, %d shop crops (skipped: %s)",
                len(tset.train_queries), len(tset.val_queries), len(tset.shop), tset.skipped)
    torch.manual_seed(tcfg.seed)
    config = {"loss": loss, "shop_crops": shop_crops, "train": OmegaConf.to_container(tcfg, resolve=True)}
    model = build_retrieval_net(tcfg.architecture, tcfg.dim, pretrained=tcfg.pretrained,
                                backbone_weights=tcfg.backbone_weights, image_size=tcfg.image_size,
                                resize=tcfg.resize, training={**config, "name": name}).to(device)
    reader = CropReader(tcfg.image_size, tcfg.resize, model.meta["mean"], model.meta["std"])
    optimizer = make_optimizer(model, tcfg)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=tcfg.lr_decay)
    history: List[Dict] = []
    best = -1.0
    start_epoch = 0
    last = out / "checkpoint_last.pt"
    if resume and last.is_file():
        _, ckpt = load_checkpoint(last)
        model.load_state_dict(ckpt["state_dict"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        start_epoch, best = int(ckpt["epoch"]) + 1, float(ckpt["best_map"])
        history = json.loads((out / "metrics.json").read_text()) if (out / "metrics.json").is_file() else []
        logger.info("resuming %s after epoch %d", out, start_epoch - 1)
    else:
        if not tcfg.pretrained:
            _calibrate(model, tset, reader, device, tcfg, np.random.default_rng([tcfg.seed, 1_000_000]))
        if rank == 0:
            untrained = validate(model, tset, reader, device, tcfg.chunk_size)
            history = [{"epoch": -1, "val_map": untrained["map"], "val_per_category": untrained["per_category"]}]
        if tcfg.classifier_epochs > 0:
            from .classifier import pretrain_classifier

            if world > 1:
                raise ValueError("classifier pre-training runs in one process; drop --num-gpus for it")
            model.train()
            set_batchnorm_eval(model)
            records = pretrain_classifier(model, tset, reader, device, epochs=tcfg.classifier_epochs, lr=tcfg.lr,
                                          batch_size=tcfg.batch_size, seed=tcfg.seed)
            after = validate(model, tset, reader, device, tcfg.chunk_size)
            history.append({"epoch": -1, "phase": "classifier", "classifier": records, "val_map": after["map"],
                            "val_per_category": after["per_category"]})
        if rank == 0:
            atomic_write_json(out / "metrics.json", history)
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False)
    for epoch in range(start_epoch, tcfg.epochs):
        t0 = time.perf_counter()
        rng = np.random.default_rng([tcfg.seed, epoch])
        model.train()
        set_batchnorm_eval(model)
        if not tcfg.pretrained:
            _calibrate(model, tset, reader, device, tcfg, rng)
        mined = None
        if loss == "ap" or tcfg.negatives == "offline":
            mined = mine_negatives(model, tset, reader, device, tcfg.chunk_size, tcfg.mine_k)
            model.train()
            set_batchnorm_eval(model)
        losses = []
        for batch in progress(batches(len(tset.train_queries), tcfg.batch_size, rng), f"epoch {epoch}",
                              unit="batch"):
            if len(batch) < world:
                continue  # every process needs a share of the batch
            value = _step(net, optimizer, tset, batch[rank::world], loss, tcfg, mined, reader, device, epoch)
            if value is not None:
                losses.append(value)
        scheduler.step()
        if rank == 0:
            val = validate(model, tset, reader, device, tcfg.chunk_size)
            record = {"epoch": epoch, "loss": float(np.mean(losses)) if losses else None, "val_map": val["map"],
                      "val_per_category": val["per_category"], "gem_p": model.pool.p.item(),
                      "seconds": time.perf_counter() - t0, "lr": scheduler.get_last_lr()[0], "processes": world}
            history.append(record)
            logger.info("epoch %d: loss %s, validation mAP %s", epoch, record["loss"], record["val_map"])
            score = val["map"] if val["map"] is not None else -record["loss"] if record["loss"] is not None else 0.0
            if score > best or not (out / "model.pt").is_file():
                best = score
                save_checkpoint(out / "model.pt", model, epoch=epoch, val_map=val["map"])
            save_checkpoint(last, model, epoch=epoch, best_map=best, optimizer=optimizer.state_dict(),
                            scheduler=scheduler.state_dict())
            atomic_write_json(out / "metrics.json", history)
        comm.synchronize()
    if rank == 0:
        summary = {"name": name, "loss": loss, "shop_crops": shop_crops, "epochs": tcfg.epochs,
                   "untrained_val_map": history[0]["val_map"] if history and history[0]["epoch"] == -1 else None,
                   "best_val_map": max((h["val_map"] for h in history if h["epoch"] >= 0 and h["val_map"] is not None),
                                       default=None),
                   "queries": {"train": len(tset.train_queries), "val": len(tset.val_queries)},
                   "shop_crops_count": len(tset.shop), "skipped": tset.skipped,
                   "config": asdict_safe(config["train"]), "processes": world}
        atomic_write_json(out / "summary.json", summary)
    comm.synchronize()


def asdict_safe(obj):
    return json.loads(json.dumps(obj, default=str))
