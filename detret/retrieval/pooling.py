"""Global pooling of a feature map [N, C, H, W] -> [N, C]: GeM (the paper's), MAC, SPoC and R-MAC.

- GeM (Radenovic et al., TPAMI 2018): ``(mean_{h,w} max(x, eps)^p)^(1/p)``; p = 1 is average pooling,
  p -> infinity approaches max pooling. The module learns p (initialised at 3, as in the paper), with
  its own learning-rate multiplier (cirtorch trains p at 10x the base rate).
- MAC: the maximum over positions (Gajic & Baldrich 2018).
- SPoC: the mean over positions (Morelli et al. 2021's "average pooling").
- R-MAC (Tolias et al. 2016, as cirtorch's ``rmac``; Morelli et al. 2021): the global MAC plus, for
  l = 1..L, square regions of side ``floor(2 min(H, W) / (l + 1))`` on a grid whose number of regions
  along the long side is chosen for about 40% overlap; each region's MAC L2-normalised, all summed.
  The final L2 comes after, in the network. The per-region PCA whitening of the original is left out:
  the network's learnt FC layer whitens the sum, as for the other poolings.

Each is a pure function beside a thin module, so it can be checked against a hand computation, and
each is an entry of :data:`POOLINGS` (``retrieval.train.pooling`` names one): the contract of a pooling
is a module [N, C, H, W] -> [N, C] built from the network's initial GeM exponent (which the others ignore).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, List, Tuple

import torch
from torch import nn

from ..errors import InputError
from ..registry import Registry

RMAC_OVERLAP = 0.4
RMAC_STEPS = (2, 3, 4, 5, 6, 7)  # candidate numbers of regions along the long side (cirtorch)


def gem(x: torch.Tensor, p: torch.Tensor | float = 3.0, eps: float = 1e-6) -> torch.Tensor:
    """x [N, C, H, W] -> [N, C]: (mean over positions of x^p)^(1/p). cirtorch averages with avg_pool2d over
    the whole map; a mean over (H, W) is the same number and exports to ONNX with a dynamic input size."""
    p_t = p if isinstance(p, torch.Tensor) else torch.tensor(float(p), dtype=x.dtype, device=x.device)
    return x.clamp(min=eps).pow(p_t).mean(dim=(-2, -1)).pow(1.0 / p_t)


def mac(x: torch.Tensor) -> torch.Tensor:
    """x [N, C, H, W] -> [N, C]: the maximum over positions."""
    return x.amax(dim=(-2, -1))


def spoc(x: torch.Tensor) -> torch.Tensor:
    """x [N, C, H, W] -> [N, C]: the mean over positions."""
    return x.mean(dim=(-2, -1))


def rmac_regions(height: int, width: int, levels: int = 3) -> List[Tuple[int, int, int]]:
    """(top, left, side) of R-MAC's square regions on an H x W map, level by level (cirtorch's rule)."""
    side_min = min(width, height)
    long_extra = [abs(((side_min ** 2 - side_min * ((max(height, width) - side_min) / (s - 1))) / side_min ** 2)
                      - RMAC_OVERLAP) for s in RMAC_STEPS]
    extra = long_extra.index(min(long_extra)) + 1  # regions added along the long side
    extra_w, extra_h = (extra, 0) if height < width else (0, extra) if height > width else (0, 0)
    regions = []
    for level in range(1, levels + 1):
        side = math.floor(2 * side_min / (level + 1))
        if side == 0:
            continue
        half = math.floor(side / 2 - 1)
        lefts = _starts(width, side, level + extra_w, half)
        tops = _starts(height, side, level + extra_h, half)
        regions += [(top, left, side) for top in tops for left in lefts]
    return regions


def _starts(length: int, side: int, count: int, half: int) -> List[int]:
    step = 0.0 if count == 1 else (length - side) / (count - 1)
    return [int(math.floor(half + i * step) - half) for i in range(count)]


def rmac(x: torch.Tensor, levels: int = 3, eps: float = 1e-6) -> torch.Tensor:
    """x [N, C, H, W] -> [N, C]: global MAC + the regions' MACs, each L2-normalised, summed (not normalised)."""
    def unit(v: torch.Tensor) -> torch.Tensor:
        return v / (v.norm(dim=1, keepdim=True) + eps)

    total = unit(mac(x))
    for top, left, side in rmac_regions(x.size(-2), x.size(-1), levels):
        total = total + unit(mac(x[..., top:top + side, left:left + side]))
    return total


class GeM(nn.Module):
    def __init__(self, p: float = 3.0, eps: float = 1e-6, learn_p: bool = True, lr_mult: float = 10.0) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)), requires_grad=learn_p)
        self.eps = eps
        self.lr_mult = lr_mult

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gem(x, self.p, self.eps)

    def extra_repr(self) -> str:
        return f"p={self.p.item():.3f}, eps={self.eps}, lr_mult={self.lr_mult}"


class MAC(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mac(x)


class SPoC(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return spoc(x)


class RMAC(nn.Module):
    def __init__(self, levels: int = 3, eps: float = 1e-6) -> None:
        super().__init__()
        self.levels, self.eps = levels, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rmac(x, self.levels, self.eps)

    def extra_repr(self) -> str:
        return f"levels={self.levels}"


@dataclass(frozen=True)
class PoolingEntry:
    """A pooling: ``build(gem_p) -> module [N, C, H, W] -> [N, C]``. ``fixed_size``: its exported graph
    holds only for the example's input size (R-MAC's region grid depends on H and W)."""
    name: str
    build: Callable[[float], nn.Module]
    summary: str
    fixed_size: bool = False


POOLINGS: Registry[PoolingEntry] = Registry("pooling")
PAPER_POOLING = POOLINGS.register(PoolingEntry("gem", lambda gem_p: GeM(p=gem_p),
                                               "GeM, p learnt (Kucer & Murray, the paper)")).name
POOLINGS.register(PoolingEntry("mac", lambda gem_p: MAC(), "MAC, the maximum (Gajic & Baldrich)"))
POOLINGS.register(PoolingEntry("spoc", lambda gem_p: SPoC(), "SPoC, the mean"))
POOLINGS.register(PoolingEntry("rmac", lambda gem_p: RMAC(), "R-MAC, regional maxima (Morelli et al.)",
                               fixed_size=True))


def build_pooling(name: str, gem_p: float = 3.0) -> nn.Module:
    """The pooling module of a checkpoint's ``meta["pooling"]``."""
    return POOLINGS.get(name, error=InputError).build(gem_p)
