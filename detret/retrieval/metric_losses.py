"""The metric-learning losses of Ibrahim et al. 2020, taken from pytorch-metric-learning (PML).

Each loss (registered in :mod:`detret.retrieval.objective`) is a function of a batch's descriptors [B, D] and their product labels [B] (any photos of
any products, street and shop alike: every photo is an anchor, so anchors come from both domains, as
the paper trains). The losses only see descriptors, so they run under multistage back-propagation
(:mod:`detret.retrieval.multistage`) like the paper's own losses.

The settings are those of the paper's reference implementation (Ibrahim et al.'s footnote 1,
``ahmdtaha/tf_retrieval_baseline``), where the paper is silent:

- ``npair``: Sohn's multi-class N-pair loss (``losses.NPairsLoss``): one positive pair per product,
  softmax cross-entropy over the batch's pairs' dot products. The reference adds an L2 penalty on the
  embeddings (lambda 0.002); detret's descriptors are L2-normalised (search is by cosine), so that
  penalty is a constant and is left out.
- ``lifted``: lifted structured loss (``losses.LiftedStructureLoss``), Euclidean distance, negative
  margin 1.0 (the reference's margin).
- ``angular``: angular loss, N-pair form (``losses.AngularLoss``), alpha 45 degrees (the reference's).
- ``batch-hard``: Hermans et al.'s batch-hard triplet (``miners.BatchHardMiner`` picks, per anchor, the
  farthest positive and the nearest negative; ``losses.TripletMarginLoss`` with the soft margin
  ``softplus(d(a, p) - d(a, n))``, the reference's default ``--margin soft``).

P x K batches (:func:`detret.retrieval.data.pk_batches`) give every product several photos; the paper
uses 10 x 6 for lifted and batch-hard, 30 x 2 for N-pair and angular.
"""
from __future__ import annotations

from typing import Callable, Dict

import torch

# P x K of the paper (Section 4) for each loss: products per batch, photos per product.
PAPER_PK: Dict[str, tuple] = {"npair": (30, 2), "angular": (30, 2), "lifted": (10, 6), "batch-hard": (10, 6)}

MetricLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (descriptors [B, D], labels [B]) -> scalar


def npair_loss() -> MetricLoss:
    from pytorch_metric_learning import losses

    return losses.NPairsLoss()


def lifted_loss() -> MetricLoss:
    from pytorch_metric_learning import losses

    return losses.LiftedStructureLoss(neg_margin=1.0, pos_margin=0.0)


def angular_loss() -> MetricLoss:
    from pytorch_metric_learning import losses

    return losses.AngularLoss(alpha=45)


def batch_hard_loss() -> MetricLoss:
    from pytorch_metric_learning import losses, miners

    miner = miners.BatchHardMiner()
    loss = losses.TripletMarginLoss(margin=0.0, smooth_loss=True)
    return lambda d, labels: loss(d, labels, miner(d, labels))
