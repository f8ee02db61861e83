"""Pre-training as a product classifier (Gordo et al., "Deep image retrieval"), before the ranking loss.

The network's descriptor feeds a linear classifier over the training products
(cosine logits: the descriptor is L2-normalised, so the logits are scaled by
`scale`), trained with cross-entropy on street and shop crops of the training
products (validation products left out). The classifier is then dropped; the
network keeps what it learnt. Ordinary back-propagation in batches of
`batch_size` images (multistage is not needed: the loss is per image).
"""
from __future__ import annotations

import logging
from typing import Dict, List

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.images import PhotoError
from ..errors import InputError
from ..utils.progress import progress
from .data import TrainingSet

logger = logging.getLogger(__name__)


def pretrain_classifier(model: nn.Module, tset: TrainingSet, reader, device, *, epochs: int, lr: float,
                        batch_size: int, seed: int, scale: float = 16.0) -> List[Dict]:
    """Train `model` + a product classifier for `epochs`; returns one record per epoch."""
    val_products = {q.product for q in tset.val_queries}
    items = [it for it in tset.train_queries + tset.shop if it.product not in val_products]
    classes = {p: i for i, p in enumerate(sorted({it.product for it in items}))}
    if len(classes) < 2:
        raise InputError("classifier pre-training needs at least two training products")
    head = nn.Linear(model.dim, len(classes), bias=False).to(device)
    optimizer = torch.optim.Adam(list(model.parameters()) + list(head.parameters()), lr=lr)
    history = []
    for epoch in range(epochs):
        rng = np.random.default_rng([seed, 2_000_000 + epoch])
        order = rng.permutation(len(items))
        losses, correct, seen = [], 0, 0
        for start in progress(range(0, len(order), batch_size), f"classifier epoch {epoch}", unit="batch"):
            batch, labels = [], []
            for i in order[start:start + batch_size]:
                try:
                    batch.append(reader(items[i], rng).to(device))
                    labels.append(classes[items[i].product])
                except PhotoError as exc:
                    logger.warning("skipping %s", exc)
            if not batch:
                continue
            target = torch.tensor(labels, device=device)
            shapes = {tuple(t.shape) for t in batch}
            desc = model(torch.stack(batch)) if len(shapes) == 1 else torch.cat([model(t[None]) for t in batch])
            logits = scale * F.linear(desc, F.normalize(head.weight, dim=1))
            loss = F.cross_entropy(logits, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            correct += int((logits.argmax(1) == target).sum())
            seen += len(labels)
        history.append({"classifier_epoch": epoch, "loss": float(np.mean(losses)) if losses else None,
                        "train_accuracy": correct / max(seen, 1)})
        logger.info("classifier pre-training epoch %d: loss %s, accuracy %.3f", epoch, history[-1]["loss"],
                    history[-1]["train_accuracy"])
    return history
