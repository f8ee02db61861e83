"""A small hand-made training set and network for the batch, loss and data-parallel tests (no photo is read:
each image key has a seeded random tensor)."""
from __future__ import annotations

import zlib
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from detret.retrieval.data import CropItem, TrainingSet

TCFG = OmegaConf.create({"seed": 3, "margin": 0.2, "negatives": "offline", "ap_negatives": 2, "ap_bins": 10})


def toy_set(n_products: int = 6, street: int = 2, shop: int = 3) -> TrainingSet:
    """`n_products` products of category "tops", each with `street` street crops and `shop` shop crops;
    the last shop crop of product 0 also shows product 1 (a photo listed for two products)."""
    queries, shops, by_product = [], [], {}
    for p in range(n_products):
        product = ("tops", p)
        for s in range(street):
            queries.append(CropItem(100 * p + s, Path(f"street{p}_{s}.jpg"), (0, 0, 8, 8), "tops", product, "street"))
        for s in range(shop):
            also = (("tops", 1),) if (p, s) == (0, shop - 1) else ()
            by_product.setdefault(product, []).append(len(shops))
            if also:
                by_product.setdefault(("tops", 1), []).append(len(shops))
            shops.append(CropItem(10_000 + 100 * p + s, Path(f"shop{p}_{s}.jpg"), None, "tops", product, "shop", also))
    return TrainingSet(queries, [], shops, by_product, {})


def image_of(key) -> torch.Tensor:
    """A seeded [3, 12, 12] float64 image for an image key."""
    g = torch.Generator().manual_seed(zlib.crc32(repr(key).encode()))  # hash() of a str differs between processes
    return torch.randn(3, 12, 12, generator=g, dtype=torch.float64)


class TinyNet(nn.Module):
    """conv -> ReLU -> average -> linear -> L2: the retrieval network's shape, small enough for many processes."""

    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 6, 3)
        self.fc = nn.Linear(6, dim)
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv(x)).mean(dim=(2, 3))
        return F.normalize(self.fc(h), dim=1)


class TinyTwoStream(nn.Module):
    """Two TinyNets, one per domain: ``forward(x, domain)`` as a two-stream RetrievalNet."""

    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.shop, self.street = TinyNet(dim), TinyNet(dim)
        with torch.no_grad():
            self.street.fc.weight.mul_(-0.5)
        self.dim = dim

    def forward(self, x: torch.Tensor, domain: str = "shop") -> torch.Tensor:
        return (self.street if domain == "street" else self.shop)(x)


def grads(model: nn.Module) -> dict:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
