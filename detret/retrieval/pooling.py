"""Generalised-mean (GeM) pooling (Radenovic et al., TPAMI 2018).

gem(x)_c = ( mean_{h,w} max(x_{c,h,w}, eps)^p )^(1/p)

p = 1 is average pooling; p -> infinity approaches max pooling. The module
learns p (initialised at 3, as in the paper), with its own learning-rate
multiplier (cirtorch trains p at 10x the base rate).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def gem(x: torch.Tensor, p: torch.Tensor | float = 3.0, eps: float = 1e-6) -> torch.Tensor:
    """x [N, C, H, W] -> [N, C]."""
    p_t = p if isinstance(p, torch.Tensor) else torch.tensor(float(p), dtype=x.dtype, device=x.device)
    return F.avg_pool2d(x.clamp(min=eps).pow(p_t), (x.size(-2), x.size(-1))).pow(1.0 / p_t).flatten(1)


class GeM(nn.Module):
    def __init__(self, p: float = 3.0, eps: float = 1e-6, learn_p: bool = True, lr_mult: float = 10.0) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)), requires_grad=learn_p)
        self.eps = eps
        self.lr_mult = lr_mult

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gem(x, self.p, self.eps)

    def extra_repr(self) -> str:
        return f"p={float(self.p):.3f}, eps={self.eps}, lr_mult={self.lr_mult}"
