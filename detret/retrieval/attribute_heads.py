"""Training with DARN's attribute heads (Huang et al. 2015): the ranking loss plus attribute classification.

Multistage back-propagation sees one vector per image; with attribute heads that vector is the
descriptor followed by each attribute's logits (:class:`DescriptorsAndLogits`), and the loss
(:func:`with_attribute_loss`) splits it again:

    L = ranking loss(descriptors) + attribute_weight * mean over attributes a of CE(logits_a, class_a)

the cross-entropy averaged over the batch's images whose product has a known value of a. DARN
trains its attribute branches jointly with the triplet loss and weighs them by hand; the weight here
is ``retrieval.train.attribute_weight``.
"""
from __future__ import annotations

from typing import Callable, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .model import SHOP, RetrievalNet


class DescriptorsAndLogits(nn.Module):
    """``forward(x, domain)`` -> [N, D + sum of the attributes' value counts]: descriptors, then logits."""

    def __init__(self, model: RetrievalNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, domain: str = SHOP) -> torch.Tensor:
        descriptors, logits = self.model.attribute_logits(x, domain)
        return torch.cat([descriptors, *logits.values()], dim=1)


def attribute_loss(logits: torch.Tensor, classes: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
    """Mean over attributes of the cross-entropy of `logits` [N, sum(sizes)] (each attribute's columns in
    turn) against `classes` [N, attributes] (-1: unknown, left out); attributes with no known value count 0."""
    total, start = logits.new_zeros(()), 0
    for a, size in enumerate(sizes):
        known = classes[:, a] >= 0
        if known.any():
            total = total + F.cross_entropy(logits[known, start:start + size], classes[known, a])
        start += size
    return total / max(1, len(sizes))


def with_attribute_loss(loss_fn: Callable[[torch.Tensor], torch.Tensor], classes: torch.Tensor, dim: int,
                        sizes: Sequence[int], weight: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """The loss of [descriptors | logits] rows: `loss_fn` on the first `dim` columns plus the weighted
    attribute loss on the rest."""
    def loss(out: torch.Tensor) -> torch.Tensor:
        return loss_fn(out[:, :dim]) + weight * attribute_loss(out[:, dim:], classes, sizes)
    return loss


def attribute_training(model: RetrievalNet, loss_fn: Callable[[torch.Tensor], torch.Tensor], classes: torch.Tensor,
                       weight: float) -> Tuple[nn.Module, int, Callable[[torch.Tensor], torch.Tensor]]:
    """(the network multistage back-propagation calls, the width of its output rows, the step's loss) for
    a model with attribute heads; `classes` [images, attributes] are the batch's images' classes (-1: unknown)."""
    sizes = [len(values) for values in model.attributes.values()]
    return (DescriptorsAndLogits(model), model.dim + sum(sizes),
            with_attribute_loss(loss_fn, classes, model.dim, sizes, weight))
