"""The retrieval network (Section 3.2) and its self-describing checkpoints.

    image [N, 3, H, W] -> torchvision backbone -> feature map [N, C, h, w]
        -> pooling [N, C] -> L2 -> fully connected [N, D] -> L2

The pooling is the paper's GeM (learnable p) unless ``retrieval.train.pooling`` chooses MAC, SPoC or
R-MAC (the other seed systems, ``pooling.py``); checkpoints record it in ``meta["pooling"]``.

A checkpoint is a ``torch.save`` dict that loads with ``weights_only=True``
(tensors and plain Python values only, no pickled classes)::

    {"meta": {"format": "detret.retrieval/1", "architecture": "resnet50", "pooling": "gem",
              "gem_p_init": 3.0, "feat_dim": 2048, "dim": 512, "mean": [...], "std": [...],
              "image_size": 224, "resize": "longest", "training": {...}},
     "state_dict": {...}, ... training state (optimizer, epoch) in training checkpoints}

so :func:`load_checkpoint` rebuilds the model from the file alone, as cirtorch's ``meta``.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from ..errors import InputError, MissingFileError
from ..runs.atomic import atomic_path
from .pooling import POOLINGS, build_pooling

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "detret.retrieval/1"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# torchvision constructor, weights enum, feature channels
ARCHITECTURES: Dict[str, Tuple[str, str, int]] = {
    "resnet18": ("resnet18", "ResNet18_Weights", 512),
    "resnet34": ("resnet34", "ResNet34_Weights", 512),
    "resnet50": ("resnet50", "ResNet50_Weights", 2048),
    "resnet101": ("resnet101", "ResNet101_Weights", 2048),
    "resnext50_32x4d": ("resnext50_32x4d", "ResNeXt50_32X4D_Weights", 2048),
    "resnext101_32x8d": ("resnext101_32x8d", "ResNeXt101_32X8D_Weights", 2048),
}


class PretrainedWeightsMissing(MissingFileError):
    """ImageNet weights asked for but not on disk; the message says where to put them."""


class RetrievalNet(nn.Module):
    def __init__(self, features: nn.Module, feat_dim: int, dim: int, gem_p: float = 3.0,
                 meta: Optional[Dict[str, Any]] = None, pooling: str = "gem") -> None:
        super().__init__()
        self.features = features
        self.pool = build_pooling(pooling, gem_p)
        self.whiten = nn.Linear(feat_dim, dim, bias=True)
        # Orthogonal rows keep distances at first; the identity when dim == feat_dim.
        nn.init.orthogonal_(self.whiten.weight)
        nn.init.zeros_(self.whiten.bias)
        self.meta: Dict[str, Any] = dict(meta or {})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, 3, H, W] normalised -> L2-normalised descriptors [N, D]."""
        pooled = F.normalize(self.pool(self.features(x)), dim=1)
        return F.normalize(self.whiten(pooled), dim=1)

    @property
    def dim(self) -> int:
        return self.whiten.out_features


def set_batchnorm_eval(module: nn.Module) -> None:
    """Freeze BatchNorm statistics (training batches are small and, with multistage
    back-propagation, seen in pieces: batch statistics would differ between passes)."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, batches) -> None:
    """Recompute every BatchNorm's running statistics as the plain average over `batches`.

    A backbone without ImageNet weights has no statistics worth freezing (the
    initial ones, mean 0 and variance 1, normalise nothing); training keeps
    BatchNorm frozen (multistage back-propagation needs a deterministic forward),
    so the statistics are measured on training crops instead, each epoch.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.training) for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
        m.train()
    for x in batches:
        model(x)
    for m, (momentum, training) in zip(bns, saved):
        m.momentum = momentum
        m.train(training)


def _torchvision_weights(arch: str):
    _, enum_name, _ = ARCHITECTURES[arch]
    return getattr(torchvision.models, enum_name).IMAGENET1K_V1


def _load_imagenet_state(arch: str, weights_path: Optional[str]) -> Dict[str, torch.Tensor]:
    if weights_path:
        path = Path(weights_path)
        if not path.is_file():
            raise PretrainedWeightsMissing(f"{path}: backbone weights file not found")
        return torch.load(path, map_location="cpu", weights_only=True)
    weights = _torchvision_weights(arch)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if not cached.is_file():
        raise PretrainedWeightsMissing(
            f"ImageNet weights for {arch} are not in the torch hub cache ({cached}). Download {weights.url} "
            f"to that path, or pass the file with backbone_weights=/path/to/file, or train with pretrained: false")
    return torch.load(cached, map_location="cpu", weights_only=True)


def build_retrieval_net(
    architecture: str = "resnet50",
    dim: int = 512,
    *,
    pretrained: bool = True,
    backbone_weights: Optional[str] = None,
    gem_p: float = 3.0,
    image_size: int = 224,
    resize: str = "longest",
    training: Optional[Dict[str, Any]] = None,
    pooling: str = "gem",
) -> RetrievalNet:
    if pooling not in POOLINGS:
        raise InputError(f"pooling {pooling!r} is not one of {', '.join(POOLINGS)}")
    if architecture not in ARCHITECTURES:
        raise InputError(f"unknown architecture {architecture!r}; known: {', '.join(ARCHITECTURES)}")
    if resize not in ("longest", "square"):
        raise InputError(f"resize must be 'longest' or 'square', got {resize!r}")
    ctor, _, feat_dim = ARCHITECTURES[architecture]
    net = getattr(torchvision.models, ctor)(weights=None)
    if pretrained:
        state = _load_imagenet_state(architecture, backbone_weights)
        missing, unexpected = net.load_state_dict(state, strict=False)
        if [k for k in missing if not k.startswith("fc.")]:
            raise InputError(f"backbone weights do not fit {architecture}: missing {missing[:5]}")
    features = nn.Sequential(*list(net.children())[:-2])  # drop avgpool and fc
    meta = {"format": CHECKPOINT_FORMAT, "architecture": architecture, "pooling": pooling, "gem_p_init": gem_p,
            "feat_dim": feat_dim, "dim": dim, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
            "image_size": image_size, "resize": resize, "pretrained": bool(pretrained),
            "training": dict(training or {})}
    return RetrievalNet(features, feat_dim, dim, gem_p, meta, pooling=pooling)


def save_checkpoint(path: Path, model: RetrievalNet, **extra: Any) -> None:
    """Atomically write {"meta", "state_dict", **extra} (extra: plain values and state dicts)."""
    payload = {"meta": model.meta, "state_dict": model.state_dict(), **extra}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> Tuple[RetrievalNet, Dict[str, Any]]:
    """(model on `device` in eval mode, the whole checkpoint dict), from the file alone."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: retrieval checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 -- torch raises several types for a bad file
        raise InputError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from exc
    meta = ckpt.get("meta") if isinstance(ckpt, dict) else None
    if not meta or meta.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{path}: not a detret retrieval checkpoint (no meta with format {CHECKPOINT_FORMAT})")
    model = build_retrieval_net(meta["architecture"], meta["dim"], pretrained=False, gem_p=meta["gem_p_init"],
                                image_size=meta["image_size"], resize=meta["resize"], training=meta["training"],
                                pooling=meta.get("pooling", "gem"))
    model.meta = dict(meta)
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval(), ckpt
