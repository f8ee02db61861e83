"""The retrieval network (Section 3.2) and its self-describing checkpoints.

    image [N, 3, H, W] -> backbone -> feature map [N, C, h, w]
        -> pooling [N, C] -> L2 -> fully connected [N, D] -> L2

The backbone is a torchvision ResNet or any timm model (``backbones.py``); the pooling is the paper's
GeM (learnable p) unless ``retrieval.train.pooling`` chooses MAC, SPoC or R-MAC (``pooling.py``).

Two options of the other seed systems:

- ``streams: domain`` (Gajic & Baldrich's "SS", DARN's two domain networks): a second network of the
  same shape, ``street``, embeds street photos; the main one embeds shop photos. ``forward(x, domain)``
  picks the stream; a shared network ignores the domain.
- attribute heads (DARN): one linear classifier per attribute on each stream's pooled, L2-normalised
  feature, trained beside the ranking loss; ``attribute_logits`` gives them, retrieval never uses them.

A checkpoint is a ``torch.save`` dict that loads with ``weights_only=True``
(tensors and plain Python values only, no pickled classes)::

    {"meta": {"format": "detret.retrieval/1", "architecture": "resnet50", "pooling": "gem",
              "streams": "shared", "attributes": {"colour": [...], ...},
              "backbone_source": "torchvision: <weights file>" | "timm: <file>" | "random initialisation",
              "gem_p_init": 3.0, "feat_dim": 2048, "dim": 512, "mean": [...], "std": [...],
              "image_size": 224, "resize": "longest", "training": {...}},
     "state_dict": {...}, ... training state (optimizer, epoch) in training checkpoints}

so :func:`load_checkpoint` rebuilds the model from the file alone, as cirtorch's ``meta``. The keys
``pooling``, ``streams`` and ``attributes`` came later; a checkpoint without them is a shared GeM
network without heads, and loads unchanged.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError, MissingFileError
from ..runs.atomic import atomic_path
from .backbones import build_backbone
from .pooling import PAPER_POOLING, POOLINGS, build_pooling

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "detret.retrieval/1"
SHOP, STREET = "shop", "street"
DOMAINS = (SHOP, STREET)
STREAMS = ("shared", "domain")


class RetrievalNet(nn.Module):
    """One stream (backbone, pooling, whitening, attribute heads), and the street stream when there are two."""

    def __init__(self, features: nn.Module, feat_dim: int, dim: int, gem_p: float = 3.0,
                 meta: Optional[Dict[str, Any]] = None, pooling: str = PAPER_POOLING,
                 attributes: Optional[Dict[str, Sequence[str]]] = None) -> None:
        super().__init__()
        self.features = features
        self.pool = build_pooling(pooling, gem_p)
        self.whiten = nn.Linear(feat_dim, dim, bias=True)
        # Orthogonal rows keep distances at first; the identity when dim == feat_dim.
        nn.init.orthogonal_(self.whiten.weight)
        nn.init.zeros_(self.whiten.bias)
        self.heads = nn.ModuleDict({name: nn.Linear(feat_dim, len(values)) for name, values in
                                    (attributes or {}).items()})
        self.street: Optional[RetrievalNet] = None
        self.meta: Dict[str, Any] = dict(meta or {})

    def stream(self, domain: str = SHOP) -> "RetrievalNet":
        """The network that embeds photos of `domain` ("shop" or "street")."""
        if domain not in DOMAINS:
            raise InputError(f"domain {domain!r} is not one of {', '.join(DOMAINS)}")
        return self.street if domain == STREET and self.street is not None else self

    def _pooled(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.pool(self.features(x)), dim=1)

    def forward(self, x: torch.Tensor, domain: str = SHOP) -> torch.Tensor:
        """x [N, 3, H, W] normalised photos of `domain` -> L2-normalised descriptors [N, D]."""
        net = self.stream(domain)
        return F.normalize(net.whiten(net._pooled(x)), dim=1)

    def attribute_logits(self, x: torch.Tensor, domain: str = SHOP) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """(descriptors [N, D], {attribute: logits [N, values]}) of photos of `domain`, in one pass."""
        net = self.stream(domain)
        pooled = net._pooled(x)
        return F.normalize(net.whiten(pooled), dim=1), {name: head(pooled) for name, head in net.heads.items()}

    def own_modules(self) -> List[nn.Module]:
        """The modules of this stream alone (without the street stream of a two-stream network)."""
        street = set(self.street.modules()) if self.street is not None else set()
        return [m for m in self.modules() if m not in street]

    @property
    def dim(self) -> int:
        return self.whiten.out_features

    @property
    def attributes(self) -> Dict[str, List[str]]:
        return dict(self.meta.get("attributes") or {})


def set_batchnorm_eval(module: nn.Module) -> None:
    """Freeze BatchNorm statistics (training batches are small and, with multistage
    back-propagation, seen in pieces: batch statistics would differ between passes)."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


@torch.no_grad()
def calibrate_batchnorm(model: RetrievalNet, batches, domain: Optional[str] = None) -> None:
    """Recompute the BatchNorm running statistics as the plain average over `batches`: every BatchNorm of
    the network (domain None), or those of `domain`'s stream, from photos of that domain.

    A backbone without ImageNet weights has no statistics worth freezing (the
    initial ones, mean 0 and variance 1, normalise nothing); training keeps
    BatchNorm frozen (multistage back-propagation needs a deterministic forward),
    so the statistics are measured on training crops instead, each epoch.
    """
    modules = model.modules() if domain is None else model.stream(domain).own_modules()
    bns = [m for m in modules if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.training) for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
        m.train()
    for x in batches:
        model(x) if domain is None else model(x, domain)
    for m, (momentum, training) in zip(bns, saved):
        m.momentum = momentum
        m.train(training)


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
    pooling: str = PAPER_POOLING,
    streams: str = "shared",
    attributes: Optional[Dict[str, Sequence[str]]] = None,
) -> RetrievalNet:
    """A network as ``retrieval.train`` describes it; `attributes`: attribute -> its values (one head each)."""
    POOLINGS.get(pooling)
    if streams not in STREAMS:
        raise InputError(f"streams {streams!r} is not one of {', '.join(STREAMS)}")
    if resize not in ("longest", "square"):
        raise InputError(f"resize must be 'longest' or 'square', got {resize!r}")
    attributes = {name: list(values) for name, values in (attributes or {}).items()}
    backbone = build_backbone(architecture, pretrained, backbone_weights)
    meta = {"format": CHECKPOINT_FORMAT, "architecture": architecture, "pooling": pooling, "streams": streams,
            "attributes": attributes, "gem_p_init": gem_p, "feat_dim": backbone.channels, "dim": dim,
            "mean": list(backbone.mean), "std": list(backbone.std), "image_size": image_size, "resize": resize,
            "pretrained": bool(pretrained), "backbone_source": backbone.source, "training": dict(training or {})}
    net = RetrievalNet(backbone.features, backbone.channels, dim, gem_p, meta, pooling=pooling, attributes=attributes)
    if streams == "domain":  # the same start for both domains (then init_from, when given, sets both)
        street = RetrievalNet(build_backbone(architecture, False, None).features, backbone.channels, dim, gem_p,
                              pooling=pooling, attributes=attributes)
        street.load_state_dict(net.state_dict())
        net.street = street
    return net


COMPATIBLE_KEYS = ("architecture", "pooling", "feat_dim", "dim")
# What load_checkpoint rebuilds the network from.
META_KEYS = ("architecture", "dim", "gem_p_init", "image_size", "resize", "training", "pooling", "streams",
             "attributes")


def initialise_from(model: RetrievalNet, path: Path) -> None:
    """Weights of `model` from the checkpoint at `path` (``retrieval.train.init_from``): each stream from
    the source's stream of its domain, so a shared source starts both streams of a two-stream network
    (Gajic & Baldrich's SS "initialised from the shared model"). Attribute heads the source lacks
    keep their initialisation. The two must agree on architecture, pooling and dimensions."""
    source, _ = load_checkpoint(path)
    for key in COMPATIBLE_KEYS:
        if source.meta.get(key) != model.meta.get(key):
            raise InputError(f"{path}: init_from {key} is {source.meta.get(key)!r}, the network being trained has "
                             f"{model.meta.get(key)!r}")
    for domain in DOMAINS if model.street is not None else (SHOP,):
        target = model.stream(domain)
        state = {k: v for k, v in source.stream(domain).state_dict().items() if not k.startswith("street.")}
        if source.attributes != model.attributes:
            state = {k: v for k, v in state.items() if not k.startswith("heads.")}
        missing, unexpected = target.load_state_dict(state, strict=False)
        left = [k for k in missing if not k.startswith(("heads.", "street."))]
        if left or unexpected:
            raise InputError(f"{path}: weights do not fit the network being trained (missing {left[:5]}, "
                             f"unexpected {unexpected[:5]})")


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
    missing = [key for key in META_KEYS if key not in meta]
    if missing:
        raise InputError(f"{path}: the checkpoint's meta lacks {', '.join(missing)} (made by another detret "
                         "version: train it again)")
    model = build_retrieval_net(meta["architecture"], meta["dim"], pretrained=False, gem_p=meta["gem_p_init"],
                                image_size=meta["image_size"], resize=meta["resize"], training=meta["training"],
                                pooling=meta["pooling"], streams=meta["streams"], attributes=meta["attributes"])
    model.meta = dict(meta)
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval(), ckpt
