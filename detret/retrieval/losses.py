"""The two training losses of Kucer & Murray (Section 3.2), pure functions beside modules.

Triplet loss (eq. 2), for L2-normalised descriptors q, d+, d-:

    L = 1/2 max(0, m + |q - d+|^2 - |q - d-|^2)

AP loss (eq. 3-4; Revaud et al., ICCV 2019, "Learning with average precision"):
AP made differentiable by histogram binning. Similarities in [min, max] are
soft-assigned to `nq` bins with triangular kernels centred at
b_k = max - k * delta (k = 0..nq-1, delta = (max - min) / (nq - 1)), which form a
partition of unity on [min, max]:

    w_k(s) = max(0, 1 - |s - b_k| / delta)
    n_k   = sum_j w_k(s_j)              soft count of all items in bin k
    n+_k  = sum_j w_k(s_j) y_j          soft count of positives in bin k
    P_k   = (sum_{i<=k} n+_i) / (sum_{i<=k} n_i)    precision down to bin k
    r_k   = n+_k / N+                   recall increment of bin k
    AP    = sum_k P_k r_k               loss = 1 - mean over queries of AP

A query with no positive has no AP: it is excluded from the mean (and counted),
so it never produces NaN; with no valid query at all the loss is 0 with zero
gradient.
"""
from __future__ import annotations

from typing import Tuple

import torch

from ..errors import InputError


def triplet_loss(q: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, margin: float) -> torch.Tensor:
    """Eq. 2, mean over the rows. q, pos, neg: [N, D]."""
    d_pos = (q - pos).pow(2).sum(1)
    d_neg = (q - neg).pow(2).sum(1)
    return 0.5 * torch.clamp(margin + d_pos - d_neg, min=0).mean()


def hardest_negative_triplet_loss(q: torch.Tensor, d: torch.Tensor, labels: torch.Tensor, margin: float
                                  ) -> torch.Tensor:
    """In-batch hardest negative (VSE++ max, Morelli et al. 2021).

    q [N, D] queries, d [N, D] their positives (row i matches q_i); `labels` [N]
    product keys: the negatives of q_i are the d_j with labels[j] != labels[i],
    and the loss uses the nearest of them. Queries with no negative in the batch
    are left out.
    """
    dist = torch.cdist(q, d).pow(2)                     # [N, N]
    d_pos = dist.diagonal()
    negative = labels[None, :] != labels[:, None]
    masked = dist.masked_fill(~negative, float("inf"))
    d_neg, _ = masked.min(dim=1)
    valid = torch.isfinite(d_neg)
    if not valid.any():
        return q.sum() * 0.0
    return 0.5 * torch.clamp(margin + d_pos[valid] - d_neg[valid], min=0).mean()


def hardest_cosine_triplet_loss(q: torch.Tensor, d: torch.Tensor, labels: torch.Tensor, margin: float = 0.1
                                ) -> torch.Tensor:
    """Morelli et al. 2021, eq. 3: ``max_{b'} [alpha - s(a, b) + s(a, b')]_+`` with s the cosine similarity.

    q [N, D] street queries, d [N, D] their matching shop photos (row i matches q_i), L2-normalised;
    ``labels`` [N] product keys: the negatives of q_i are the d_j of other products in the batch, and
    only the most violating one counts. Summed over the batch's pairs, as VSE++ (Faghri et al.), whose
    max-violation loss eq. 3 is (the paper is silent on the reduction). Queries with no negative in the
    batch are left out.
    """
    sim = q @ d.T                                       # [N, N] cosine similarities
    negative = labels[None, :] != labels[:, None]
    hardest = sim.masked_fill(~negative, float("-inf")).max(dim=1).values
    valid = torch.isfinite(hardest)
    if not valid.any():
        return q.sum() * 0.0
    return torch.clamp(margin - sim.diagonal()[valid] + hardest[valid], min=0).sum()


def bin_weights(scores: torch.Tensor, nq: int, min_value: float, max_value: float) -> torch.Tensor:
    """Triangular soft assignment [..., nq] of scores [...] to the bins (highest bin first)."""
    delta = (max_value - min_value) / (nq - 1)
    centres = max_value - delta * torch.arange(nq, dtype=scores.dtype, device=scores.device)
    clamped = scores.clamp(min_value, max_value)
    return torch.clamp(1.0 - (clamped.unsqueeze(-1) - centres).abs() / delta, min=0.0)


def ap_loss(scores: torch.Tensor, labels: torch.Tensor, nq: int = 25, min_value: float = -1.0,
            max_value: float = 1.0) -> Tuple[torch.Tensor, int]:
    """(1 - mean binned AP over queries with a positive, number of queries excluded).

    scores [N, M] similarities of N queries to M items; labels [N, M] in {0, 1}.
    """
    if nq < 2:
        raise InputError(f"nq must be at least 2, got {nq}")
    labels = labels.to(scores.dtype)
    w = bin_weights(scores, nq, min_value, max_value)         # [N, M, nq]
    n_all = w.sum(dim=1)                                       # [N, nq]
    n_pos = (w * labels.unsqueeze(-1)).sum(dim=1)              # [N, nq]
    n_positives = labels.sum(dim=1)                            # [N]
    valid = n_positives > 0
    excluded = int((~valid).sum())
    if not valid.any():
        return scores.sum() * 0.0, excluded
    cum_all = n_all.cumsum(dim=1)
    cum_pos = n_pos.cumsum(dim=1)
    precision = cum_pos / cum_all.clamp(min=1e-12)
    recall_inc = n_pos / n_positives.clamp(min=1.0).unsqueeze(1)
    ap = (precision * recall_inc).sum(dim=1)                   # [N]
    return 1.0 - ap[valid].mean(), excluded
