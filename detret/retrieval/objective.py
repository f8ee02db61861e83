"""The training losses by name (:data:`LOSSES`) and the one contract every loss meets.

A loss is a function of the batch's descriptors and of what the batch is made of:

    loss(descriptors [K, D], batch: LossBatch) -> scalar

where ``descriptors`` holds one L2-normalised row per distinct image of the batch and
:class:`LossBatch` says how they form the loss's rows (``columns`` [R, width]: the images of each
row), each row's product label, the domain of every image, and, for a ranking loss, the items
ranked and their relevance. What the rows are is the loss's :class:`Rows`, which the sampler reads
to draw the batch: (query, positive, mined negative) triplets, (query, positive) pairs, queries
ranked against shop items, or labelled photos (any photos of any products, both domains). A loss of
labelled photos only needs ``f(descriptors [R, D], labels [R]) -> scalar``: :func:`photo_loss`
turns such a function (a pytorch-metric-learning loss, say) into the contract.

The seven built-in losses register here, each a thin adapter over the pure functions of
:mod:`detret.retrieval.losses` (the paper's, Morelli et al.'s) and
:mod:`detret.retrieval.metric_losses` (Ibrahim et al.'s, pytorch-metric-learning). A loss of
another package registers the same way (see :mod:`detret.registry`).
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Callable, Optional

import torch

from ..registry import Registry
from .losses import ap_loss, hardest_cosine_triplet_loss, hardest_negative_triplet_loss, triplet_loss
from .metric_losses import angular_loss, batch_hard_loss, lifted_loss, npair_loss


class Rows(StrEnum):
    """What one row of a loss is, which decides how a batch is drawn (``detret.retrieval.batch``)."""
    TRIPLETS = "triplets"   # (street query, shop positive, mined shop negative); negatives mined each epoch
    RANKING = "ranking"     # (street query,) ranked against LossBatch.items (its positive + mined negatives)
    PAIRS = "pairs"         # (street query, shop positive); negatives are the batch's other products
    PHOTOS = "photos"       # (photo,) with a product label, street and shop alike (P x K batches allowed)

    @property
    def mined(self) -> bool:
        """Whether the epoch starts by mining each query's hard negatives."""
        return self in (Rows.TRIPLETS, Rows.RANKING)


@dataclass(frozen=True)
class LossBatch:
    """How a batch's K images form the loss's R rows (all tensors on the batch's device)."""
    columns: torch.Tensor                      # [R, width] long: the images of each row
    labels: torch.Tensor                       # [R] long: each row's product, numbered in sorted order
    street: torch.Tensor                       # [K] bool: which images are street photos
    items: Optional[torch.Tensor] = None       # [M] long: the images a ranking loss ranks
    relevance: Optional[torch.Tensor] = None   # [R, M] float: 1 where item m shows row r's product


LossFn = Callable[[torch.Tensor, LossBatch], torch.Tensor]


@dataclass(frozen=True)
class LossEntry:
    """A loss: ``rows(train_config)`` says what it learns from, ``build(train_config)`` gives the
    :data:`LossFn` (``train_config`` is ``retrieval.train``: margin, ap_bins, ...)."""
    name: str
    build: Callable[[object], LossFn]
    rows: Callable[[object], Rows]
    summary: str


def photo_loss(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> LossFn:
    """The contract of a loss of labelled photos ``fn(descriptors [R, D], labels [R]) -> scalar``."""
    return lambda d, batch: fn(d[batch.columns[:, 0]], batch.labels)


def _triplet(tcfg) -> LossFn:
    if _triplet_rows(tcfg) == Rows.TRIPLETS:
        return lambda d, b: triplet_loss(d[b.columns[:, 0]], d[b.columns[:, 1]], d[b.columns[:, 2]], tcfg.margin)
    return lambda d, b: hardest_negative_triplet_loss(d[b.columns[:, 0]], d[b.columns[:, 1]], b.labels, tcfg.margin)


def _triplet_rows(tcfg) -> Rows:
    """Offline negatives: mined triplets; batch negatives: pairs, each query's hardest negative in the batch."""
    return Rows.TRIPLETS if tcfg.negatives == "offline" else Rows.PAIRS


def _ap(tcfg) -> LossFn:
    return lambda d, b: ap_loss(d[b.columns[:, 0]] @ d[b.items].T, b.relevance, nq=tcfg.ap_bins)[0]


def _hardest(tcfg) -> LossFn:
    return lambda d, b: hardest_cosine_triplet_loss(d[b.columns[:, 0]], d[b.columns[:, 1]], b.labels, tcfg.margin)


def _photos(factory: Callable[[], Callable]) -> Callable[[object], LossFn]:
    return lambda tcfg: photo_loss(factory())


def _always(rows: Rows) -> Callable[[object], Rows]:
    return lambda tcfg: rows


LOSSES: Registry[LossEntry] = Registry("loss")
LOSSES.register(LossEntry("triplet", _triplet, _triplet_rows, "triplet loss, eq. 2 (Kucer & Murray)"))
LOSSES.register(LossEntry("ap", _ap, _always(Rows.RANKING), "listwise AP loss, eq. 3-4 (Kucer & Murray)"))
LOSSES.register(LossEntry("hardest", _hardest, _always(Rows.PAIRS),
                          "hardest-negative triplet, cosine (Morelli et al.)"))
LOSSES.register(LossEntry("npair", _photos(npair_loss), _always(Rows.PHOTOS), "N-pair (Ibrahim et al.)"))
LOSSES.register(LossEntry("lifted", _photos(lifted_loss), _always(Rows.PHOTOS),
                          "lifted structured (Ibrahim et al.)"))
LOSSES.register(LossEntry("angular", _photos(angular_loss), _always(Rows.PHOTOS), "angular (Ibrahim et al.)"))
LOSSES.register(LossEntry("batch-hard", _photos(batch_hard_loss), _always(Rows.PHOTOS),
                          "batch-hard triplet (Ibrahim et al.)"))
