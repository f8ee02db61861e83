"""`detret train-retrieval`: the retrieval network trained with a ranking loss.

The paper's triplet and AP losses, Morelli et al.'s hardest-negative triplet, and Ibrahim et al.'s
N-pair, lifted, angular and batch-hard losses (pytorch-metric-learning, ``metric_losses.py``).

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
   - hardest: as triplet, batch, with cosine similarity and a sum (Morelli et al. eq. 3);
   - npair, lifted, angular, batch-hard: the labelled photos of the batch (``sampler: pk``:
     P products x K photos of both domains; ``pairs``: each query and its shop crop);
   batches are drawn alike in every process of a data-parallel group, each process embeds
   a share, and the loss is computed on the whole batch (``batch.py``, ``multistage.py``);
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from ..config.choices import Negatives, Optimizer, ShopCrops, Streams, check_choice
from ..config.recipes import default_model_name
from ..data.attributes import ProductAttributes, attributes_path, load_attributes
from ..data.images import PhotoError
from ..data.street2shop import load_street2shop
from ..errors import InputError
from ..runs.atomic import atomic_write_json
from ..runs.layout import DETECTIONS_FILE, MODEL_FILE, RunLayout
from ..runs.manifest import read_manifest
from ..runs.stage import SUMMARY_NAME, Stage, require_fresh
from ..utils.device import DataParallel, resolve_device
from ..utils.progress import progress
from .attribute_heads import attribute_training
from .batch import SAMPLERS, Draw, assemble, augment_rng, crop_item
from ..detect.masks import CropShape
from .data import CropItem, CropReader, TrainingSet, build_training_set, load_shop_boxes, training_masks
from .metrics import full_gallery_ap
from .model import (
    RetrievalNet,
    build_retrieval_net,
    calibrate_batchnorm,
    initialise_from,
    load_checkpoint,
    save_checkpoint,
    set_batchnorm_eval,
)
from .multistage import Share, embed_images, multistage_backward
from .objective import LOSSES
from .pooling import POOLINGS, GeM

logger = logging.getLogger(__name__)

LAST_CHECKPOINT = "checkpoint_last.pt"  # resume state, written every epoch


def make_optimizer(model: RetrievalNet, tcfg) -> torch.optim.Optimizer:
    gems = [m for m in model.modules() if isinstance(m, GeM)]  # one per stream
    gem_ps = {id(m.p) for m in gems}
    groups = [{"params": [p for p in model.parameters() if id(p) not in gem_ps], "lr": tcfg.lr}]
    if gems:  # GeM's p at its own rate, without weight decay (cirtorch)
        groups.append({"params": [m.p for m in gems], "lr": tcfg.lr * gems[0].lr_mult, "weight_decay": 0.0})
    optimizer = check_choice(tcfg.optimizer, Optimizer, "retrieval.train.optimizer")
    if optimizer == Optimizer.ADAM:
        return torch.optim.Adam(groups, lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    return torch.optim.SGD(groups, lr=tcfg.lr, momentum=0.9, weight_decay=tcfg.weight_decay)


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
    """Descriptors [N, D] (zeros for unreadable photos), no augmentation, eval mode, each photo by the
    stream of its domain."""
    was_training = model.training
    model.eval()
    out = torch.zeros(len(items), model.dim)
    for start in progress(range(0, len(items), chunk), desc, unit="chunk"):
        tensors, ok = _read_many(reader, items[start:start + chunk], device)
        if tensors:
            domains = [items[start + i].domain for i in ok]
            out[[start + i for i in ok]] = embed_images(model, tensors, chunk, domains).float().cpu()
    model.train(was_training)
    if was_training:
        set_batchnorm_eval(model)
    return out


def mine_negatives(model, tset: TrainingSet, reader, device, chunk: int, k: int) -> List[np.ndarray]:
    """Per training query, the indices of its k most similar shop crops of its category, other products."""
    q = embed_items(model, reader, tset.train_queries, device, chunk, "mining: queries")
    s = embed_items(model, reader, tset.shop, device, chunk, "mining: shop")
    cats = np.array([it.category for it in tset.shop])
    sims = (q @ s.T).numpy()
    mined = []
    for i, query in enumerate(tset.train_queries):
        showing = np.zeros(len(tset.shop), bool)
        showing[tset.shop_by_product[query.product]] = True
        candidates = np.flatnonzero((cats == query.category) & ~showing)
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
    per_cat: Dict[str, List[float]] = {}
    for i, query in enumerate(tset.val_queries):
        idx = np.flatnonzero(cats == query.category)
        positives = np.array([tset.shop[j].shows(query.product) for j in idx])
        if positives.any():
            per_cat.setdefault(query.category, []).append(full_gallery_ap((q[i] @ s[idx].T).numpy(), positives))
    per_category = {c: float(np.mean(v)) for c, v in sorted(per_cat.items())}
    return {"map": float(np.mean(list(per_category.values()))) if per_category else None,
            "per_category": per_category, "queries": sum(len(v) for v in per_cat.values())}


def _calibrate(model, tset: TrainingSet, reader, device, tcfg, rng: np.random.Generator, n_items: int = 256) -> None:
    """BatchNorm statistics from (augmented) training crops: street and shop alike for a shared network,
    each stream from photos of its domain for two."""
    if model.street is None:
        parts = [(None, tset.train_queries + tset.shop)]
    else:
        parts = [("street", tset.train_queries), ("shop", tset.shop)]
    for domain, items in parts:
        chosen = [items[int(i)] for i in rng.choice(len(items), size=min(n_items, len(items)), replace=False)]
        tensors, _ = _read_many(reader, chosen, device, rng)
        by_shape: Dict[tuple, List[torch.Tensor]] = {}
        for t in tensors:
            by_shape.setdefault(tuple(t.shape), []).append(t)
        batches_ = [torch.stack(v[i:i + 32]) for v in by_shape.values() for i in range(0, len(v), 32)]
        calibrate_batchnorm(model, batches_, domain)


def _read_one(reader: CropReader, item: CropItem, device, rng) -> Optional[torch.Tensor]:
    try:
        return reader(item, rng).to(device)
    except PhotoError as exc:
        logger.warning("skipping %s", exc)
        return None


def _all_readable(readable: set, world: int) -> set:
    """The union over the processes of the keys each could read (every process reads a share)."""
    if world == 1:
        return readable
    gathered: List[Optional[set]] = [None] * world
    torch.distributed.all_gather_object(gathered, readable)
    return set().union(*gathered)


def _step(run: "TrainRun", draw: Draw, epoch: int) -> Optional[float]:
    """One optimiser step on the batch `draw`, drawn alike in every process.

    Each process reads and embeds every `world`-th image; the loss and its gradient are computed on
    the whole batch everywhere (multistage.Share), so N processes take the step of one. Rows with an
    image that cannot be read are dropped (alike everywhere: the readable sets are gathered first).
    """
    tcfg, tset = run.tcfg, run.tset
    mine = draw.keys()[run.rank::run.world]
    tensors = {k: _read_one(run.reader, crop_item(tset, k), run.device, augment_rng(tcfg.seed, epoch, k))
               for k in mine}
    readable = _all_readable({k for k, t in tensors.items() if t is not None}, run.world)
    keys, loss_fn = assemble(draw, readable, tset, tcfg, run.device)
    if loss_fn is None:
        return None  # alike in every process: no step anywhere
    net, width = run.model, run.model.dim
    if run.attributes is not None:  # descriptors and attribute logits in one vector per image
        classes = torch.tensor([run.attributes.classes(crop_item(tset, k).product) for k in keys],
                               dtype=torch.long, device=run.device).reshape(len(keys), len(run.attributes.values))
        net, width, loss_fn = attribute_training(run.model, loss_fn, classes, tcfg.attribute_weight)
    run.optimizer.zero_grad(set_to_none=True)
    rows = [n for n, k in enumerate(keys) if k in tensors]
    share = Share(rows, len(keys), run.world, width) if run.world > 1 else None
    domains = [keys[n][0] for n in rows] if run.model.street is not None else None
    value = multistage_backward(net, [tensors[keys[n]] for n in rows], loss_fn, tcfg.chunk_size, share, domains)
    run.optimizer.step()
    return float(value)


def training_config(loss: str, shop_crops: str, tcfg) -> Dict:
    """What a retrieval run is trained with: the stage's config, the checkpoint's meta and the summary (the
    crop keys only for mask crops, so that runs made before they existed keep their identity)."""
    train = OmegaConf.to_container(tcfg, resolve=True)
    if train.get("crop", "box") == "box":
        train.pop("crop", None)
        train.pop("mask_fill", None)
    return {"loss": loss, "shop_crops": shop_crops, "train": train}


def _stage(pcfg: DictConfig, loss: str, shop_crops: str, name: str, command: Optional[str]) -> Stage:
    layout = RunLayout(pcfg.run_dir)
    tcfg = pcfg.retrieval.train
    root = Path(pcfg.data.street2shop.root)
    inputs = {"annotations": root / "meta" / "json", "photos": root / "images"}
    if shop_crops == "detected":
        require_fresh(layout.detect_shop, "the shop crops (detret detect --split shop)")
        inputs["shop_crops"] = layout.shop_detections
    if tcfg.pretrained and tcfg.backbone_weights:
        inputs["backbone_weights"] = Path(tcfg.backbone_weights)
    if tcfg.init_from:
        inputs["init_from"] = layout.retrieval_checkpoint(tcfg.init_from, "retrieval.train.init_from")
    if tcfg.attribute_weight > 0:
        inputs["attributes"] = attributes_path(root)
    if tcfg.crop == "mask":   # the masks: the shop photos' and the training street photos' detections
        inputs["shop_crops"] = layout.shop_detections
        inputs["street_crops"] = layout.detect("street", "train") / DETECTIONS_FILE
    return Stage(layout.retrieval(name), f"train-retrieval-{name}", config=training_config(loss, shop_crops, tcfg),
                 inputs=inputs, command=command, pipeline_config=pcfg)


def _check_streams(pcfg: DictConfig) -> None:
    tcfg = pcfg.retrieval.train
    check_choice(tcfg.streams, Streams, "retrieval.train.streams")
    if tcfg.streams == Streams.DOMAIN and tcfg.classifier_epochs > 0:
        raise InputError("classifier pre-training trains one network: pre-train with streams: shared, then train "
                         "streams: domain with init_from: <that run> (Gajic & Baldrich's order)")
    if tcfg.attribute_weight < 0:
        raise InputError(f"retrieval.train.attribute_weight must be >= 0, got {tcfg.attribute_weight}")
    if tcfg.attribute_weight > 0:
        load_attributes(attributes_path(Path(pcfg.data.street2shop.root)))  # a missing or bad file fails now


def check_blocks(loss: str, tcfg) -> None:
    """The loss, the pooling and the sampler are registered, and the sampler draws the loss's rows."""
    rows = LOSSES.get(loss, "--loss").rows(tcfg)
    POOLINGS.get(tcfg.pooling, "retrieval.train.pooling")
    sampler = SAMPLERS.get(tcfg.sampler, "retrieval.train.sampler")
    if rows not in sampler.rows:
        takes = [e.name for e in LOSSES if e.rows(tcfg) in sampler.rows]
        raise InputError(f"retrieval.train.sampler={sampler.name} is for the losses {', '.join(takes)}; --loss {loss} "
                         f"trains on {rows.value} rows (sampler: pairs)")
    sampler.check(tcfg)


def _check_resumable(out: Path) -> None:
    previous = read_manifest(out)
    if previous is None or previous.state != "running" or not (out / LAST_CHECKPOINT).is_file():
        raise InputError(f"{out}: --resume given, but there is no interrupted run with a checkpoint to continue")


def run_train_retrieval(pcfg: DictConfig, loss: str, shop_crops: str, *, name: Optional[str] = None,
                        force: bool = False, resume: bool = False, command: Optional[str] = None, num_gpus: int = 0,
                        num_machines: int = 1, machine_rank: int = 0, dist_url: str = "auto") -> Dict:
    """The train-retrieval stage; data-parallel over `num_gpus` processes x `num_machines` when > 1
    (Detectron2's ``launch``: NCCL on GPUs, gloo on CPUs)."""
    check_choice(shop_crops, ShopCrops, "shop crops")
    check_choice(pcfg.retrieval.train.negatives, Negatives, "retrieval.train.negatives")
    check_blocks(loss, pcfg.retrieval.train)
    _check_streams(pcfg)
    if not pcfg.data.street2shop.root:
        raise InputError("data.street2shop.root is not set in the pipeline config")
    resolve_device(pcfg.device)  # a config asking for a missing GPU fails now
    name = name or default_model_name(loss, shop_crops)
    stage = _stage(pcfg, loss, shop_crops, name, command)
    if resume:
        _check_resumable(stage.stage_dir)
    reused = stage.reuse_or_begin(force=force)
    if reused is not None:
        return reused
    args = (OmegaConf.to_yaml(pcfg), loss, shop_crops, name, stage.state == "resume")
    parallel = DataParallel(num_gpus, num_machines, machine_rank, dist_url)
    if parallel.world > 1:
        parallel.launch(_train_worker, *args)
    else:
        _train_worker(*args)
    if machine_rank != 0:
        return {"name": name, "machine_rank": machine_rank}  # rank 0's machine holds the artifacts
    stage.complete({"model": MODEL_FILE, "metrics": "metrics.json", "summary": SUMMARY_NAME})
    return json.loads((stage.stage_dir / SUMMARY_NAME).read_text())


@dataclass
class TrainRun:
    """Everything one training process holds: config, data, network, optimiser, and where it writes."""

    pcfg: DictConfig
    loss: str
    shop_crops: str
    name: str
    rank: int
    world: int
    device: torch.device
    out: Path
    tset: TrainingSet
    model: RetrievalNet
    reader: CropReader
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    attributes: Optional[ProductAttributes] = None  # the attribute heads' classes, when trained with them
    history: List[Dict] = field(default_factory=list)
    best: float = -1.0
    start_epoch: int = 0

    @property
    def tcfg(self):
        return self.pcfg.retrieval.train


def _setup(pcfg_yaml: str, loss: str, shop_crops: str, name: str) -> TrainRun:
    """Data, network, optimiser and schedule of this process (the same seed in every process)."""
    from detectron2.utils import comm

    pcfg = OmegaConf.create(pcfg_yaml)
    tcfg = pcfg.retrieval.train
    world = comm.get_world_size()
    device = resolve_device(pcfg.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", comm.get_local_rank())
    layout = RunLayout(pcfg.run_dir)
    root = Path(pcfg.data.street2shop.root)
    shape = CropShape(tcfg.crop, tcfg.mask_fill)
    shop_boxes = load_shop_boxes(layout.shop_detections) if shop_crops == "detected" else None
    masks = training_masks(layout) if shape.shape == "mask" else None
    tset = build_training_set(load_street2shop(root, splits=("train",)), shop_boxes, val_fraction=tcfg.val_fraction,
                              seed=tcfg.seed, masks=masks)
    if not tset.train_queries:
        raise InputError(f"{root}: no usable training query (skipped: {tset.skipped})")
    logger.info("%d training queries, %d validation queries, %d shop crops (skipped: %s)",
                len(tset.train_queries), len(tset.val_queries), len(tset.shop), tset.skipped)
    attributes = load_attributes(attributes_path(root)) if tcfg.attribute_weight > 0 else None
    torch.manual_seed(tcfg.seed)
    model = build_retrieval_net(tcfg.architecture, tcfg.dim, pretrained=tcfg.pretrained,
                                backbone_weights=tcfg.backbone_weights, image_size=tcfg.image_size, resize=tcfg.resize,
                                training={**training_config(loss, shop_crops, tcfg), "name": name},
                                pooling=tcfg.pooling,
                                streams=tcfg.streams, attributes=attributes.values if attributes else None)
    if tcfg.init_from:
        initialise_from(model, layout.retrieval_checkpoint(tcfg.init_from, "retrieval.train.init_from"))
    model = model.to(device)
    if world > 1:  # one start everywhere (the seed gives it already; a broadcast makes sure)
        for tensor in model.state_dict().values():
            torch.distributed.broadcast(tensor, src=0)
    reader = CropReader(tcfg.image_size, tcfg.resize, model.meta["mean"], model.meta["std"], shape)
    optimizer = make_optimizer(model, tcfg)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=tcfg.lr_decay)
    return TrainRun(pcfg, loss, shop_crops, name, comm.get_rank(), world, device, layout.retrieval(name), tset, model,
                    reader, optimizer, scheduler, attributes)


def _resume(run: TrainRun) -> None:
    """Weights, optimiser, schedule and history of the last finished epoch (``checkpoint_last.pt``)."""
    _, ckpt = load_checkpoint(run.out / LAST_CHECKPOINT)
    run.model.load_state_dict(ckpt["state_dict"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    run.scheduler.load_state_dict(ckpt["scheduler"])
    run.start_epoch, run.best = int(ckpt["epoch"]) + 1, float(ckpt["best_map"])
    run.history = json.loads(ckpt["history_json"])
    logger.info("resuming %s after epoch %d", run.out, run.start_epoch - 1)


def _start(run: TrainRun) -> None:
    """Before the first epoch: BatchNorm calibration (random init), the untrained validation mAP
    (epoch -1), the optional classification pre-training."""
    tcfg = run.tcfg
    if not tcfg.pretrained:
        _calibrate(run.model, run.tset, run.reader, run.device, tcfg, np.random.default_rng([tcfg.seed, 1_000_000]))
    if run.rank == 0:
        untrained = validate(run.model, run.tset, run.reader, run.device, tcfg.chunk_size)
        run.history = [{"epoch": -1, "val_map": untrained["map"], "val_per_category": untrained["per_category"]}]
    if tcfg.classifier_epochs > 0:
        from .classifier import pretrain_classifier

        if run.world > 1:
            raise InputError("classifier pre-training runs in one process; drop --num-gpus for it")
        run.model.train()
        set_batchnorm_eval(run.model)
        records = pretrain_classifier(run.model, run.tset, run.reader, run.device, epochs=tcfg.classifier_epochs,
                                      lr=tcfg.lr, batch_size=tcfg.batch_size, seed=tcfg.seed)
        after = validate(run.model, run.tset, run.reader, run.device, tcfg.chunk_size)
        run.history.append({"epoch": -1, "phase": "classifier", "classifier": records, "val_map": after["map"],
                            "val_per_category": after["per_category"]})
    if run.rank == 0:
        atomic_write_json(run.out / "metrics.json", run.history)


def _draws(run: TrainRun, rng: np.random.Generator, epoch: int) -> List[Draw]:
    """The epoch's batches, from the sampler, after mining each query's hard negatives when the loss's rows
    need them (the triplet loss with offline negatives, the AP loss)."""
    mined = None
    if LOSSES.get(run.loss).rows(run.tcfg).mined:
        mined = mine_negatives(run.model, run.tset, run.reader, run.device, run.tcfg.chunk_size, run.tcfg.mine_k)
        run.model.train()
        set_batchnorm_eval(run.model)
    return SAMPLERS.get(run.tcfg.sampler).draws(run.tset, run.loss, run.tcfg, mined, epoch, rng)


def _train_epoch(run: TrainRun, epoch: int) -> List[float]:
    """One epoch of optimiser steps (after mining, when the loss needs it); the batches' loss values."""
    tcfg = run.tcfg
    rng = np.random.default_rng([tcfg.seed, epoch])
    run.model.train()
    set_batchnorm_eval(run.model)
    if not tcfg.pretrained:
        _calibrate(run.model, run.tset, run.reader, run.device, tcfg, rng)
    losses = []
    for draw in progress(_draws(run, rng, epoch), f"epoch {epoch}", unit="batch"):
        value = _step(run, draw, epoch)
        if value is not None:
            losses.append(value)
    run.scheduler.step()
    return losses


def _end_epoch(run: TrainRun, epoch: int, losses: List[float], seconds: float) -> None:
    """Rank 0: validation, the epoch's record, model.pt when best, checkpoint_last.pt, metrics.json."""
    val = validate(run.model, run.tset, run.reader, run.device, run.tcfg.chunk_size)
    gem_p = run.model.pool.p.item() if isinstance(run.model.pool, GeM) else None
    record = {"epoch": epoch, "loss": float(np.mean(losses)) if losses else None, "val_map": val["map"],
              "val_per_category": val["per_category"], "gem_p": gem_p, "seconds": seconds,
              "lr": run.scheduler.get_last_lr()[0], "processes": run.world}
    run.history.append(record)
    logger.info("epoch %d: loss %s, validation mAP %s", epoch, record["loss"], record["val_map"])
    score = val["map"] if val["map"] is not None else -record["loss"] if record["loss"] is not None else 0.0
    if score > run.best or not (run.out / MODEL_FILE).is_file():
        run.best = score
        save_checkpoint(run.out / MODEL_FILE, run.model, epoch=epoch, val_map=val["map"])
    # The resume state holds the history too: a kill between this file and metrics.json loses no record.
    save_checkpoint(run.out / LAST_CHECKPOINT, run.model, epoch=epoch, best_map=run.best,
                    optimizer=run.optimizer.state_dict(), scheduler=run.scheduler.state_dict(),
                    history_json=json.dumps(run.history))
    atomic_write_json(run.out / "metrics.json", run.history)


def _write_summary(run: TrainRun) -> None:
    """metrics.json (again: a run resumed after its last epoch has not written it) and summary.json."""
    history = run.history
    atomic_write_json(run.out / "metrics.json", history)
    summary = {"name": run.name, "loss": run.loss, "shop_crops": run.shop_crops, "epochs": run.tcfg.epochs,
               "untrained_val_map": history[0]["val_map"] if history and history[0]["epoch"] == -1 else None,
               "best_val_map": max((h["val_map"] for h in history if h["epoch"] >= 0 and h["val_map"] is not None),
                                   default=None),
               "queries": {"train": len(run.tset.train_queries), "val": len(run.tset.val_queries)},
               "shop_crops_count": len(run.tset.shop), "skipped": run.tset.skipped,
               "config": json.loads(json.dumps(training_config(run.loss, run.shop_crops, run.tcfg)["train"],
                                               default=str)),
               "processes": run.world}
    atomic_write_json(run.out / SUMMARY_NAME, summary)


def _train_worker(pcfg_yaml: str, loss: str, shop_crops: str, name: str, resume: bool) -> None:
    """The training itself, in one process of a data-parallel group (or alone)."""
    from detectron2.utils import comm

    run = _setup(pcfg_yaml, loss, shop_crops, name)
    if resume and (run.out / LAST_CHECKPOINT).is_file():
        _resume(run)
    else:
        _start(run)
    for epoch in range(run.start_epoch, run.tcfg.epochs):
        t0 = time.perf_counter()
        losses = _train_epoch(run, epoch)
        if run.rank == 0:
            _end_epoch(run, epoch, losses, time.perf_counter() - t0)
        comm.synchronize()
    if run.rank == 0:
        _write_summary(run)
    comm.synchronize()
