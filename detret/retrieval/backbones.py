"""The retrieval network's backbone: a feature map [N, C, h, w] of an image batch.

``retrieval.train.architecture`` names it:

- a torchvision ResNet / ResNeXt (:data:`ARCHITECTURES`, the default; ImageNet weights from the torch
  hub cache or ``backbone_weights``);
- ``timm:<model name>`` (``timm:convnext_tiny``, ``timm:vit_small_patch16_224``, any model of
  ``timm.list_models()``): its ``forward_features``; a transformer's patch tokens are laid back on
  their grid (prefix tokens such as CLS dropped), so every pooling applies. Weights from
  ``backbone_weights`` (a state dict file) or timm's Hugging Face cache, never downloaded: missing
  weights raise :class:`PretrainedWeightsMissing` naming the file to fetch.

Both give (features module, channels C, input mean, input std).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, NamedTuple, Optional, Sequence, Tuple

import torch
import torchvision
from torch import nn

from ..config.choices import TIMM_PREFIX
from ..errors import InputError, MissingFileError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RANDOM_INIT = "random initialisation"

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


class Backbone(NamedTuple):
    features: nn.Module
    channels: int
    mean: Sequence[float]
    std: Sequence[float]
    source: str  # where its initial weights came from: a file, a cache entry, or "random initialisation"


def check_architecture(architecture: str) -> None:
    """An InputError unless `architecture` is a torchvision name or ``timm:<a timm model>``."""
    if architecture.startswith(TIMM_PREFIX):
        import timm

        name = architecture[len(TIMM_PREFIX):]
        if not timm.is_model(name):
            raise InputError(f"architecture {architecture!r}: timm has no model {name!r} (see timm.list_models())")
    elif architecture not in ARCHITECTURES:
        raise InputError(f"unknown architecture {architecture!r}; known: {', '.join(ARCHITECTURES)}, "
                         f"or timm:<model name>")


def build_backbone(architecture: str, pretrained: bool, weights_path: Optional[str]) -> Backbone:
    check_architecture(architecture)
    if architecture.startswith(TIMM_PREFIX):
        return _timm_backbone(architecture[len(TIMM_PREFIX):], pretrained, weights_path)
    ctor, _, channels = ARCHITECTURES[architecture]
    net = getattr(torchvision.models, ctor)(weights=None)
    source = RANDOM_INIT
    if pretrained:
        path = _torchvision_file(architecture, weights_path)
        missing, _ = net.load_state_dict(_read_state(path), strict=False)
        if [k for k in missing if not k.startswith("fc.")]:
            raise InputError(f"backbone weights do not fit {architecture}: missing {missing[:5]}")
        source = f"torchvision: {path}"
    features = nn.Sequential(*list(net.children())[:-2])  # drop avgpool and fc
    return Backbone(features, channels, IMAGENET_MEAN, IMAGENET_STD, source)


def _read_state(path: Path) -> Dict[str, torch.Tensor]:
    if not path.is_file():
        raise PretrainedWeightsMissing(f"{path}: backbone weights file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


def _torchvision_file(arch: str, weights_path: Optional[str]) -> Path:
    if weights_path:
        return Path(weights_path)
    _, enum_name, _ = ARCHITECTURES[arch]
    weights = getattr(torchvision.models, enum_name).IMAGENET1K_V1
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if not cached.is_file():
        raise PretrainedWeightsMissing(
            f"ImageNet weights for {arch} are not in the torch hub cache ({cached}). Download {weights.url} "
            f"to that path, or pass the file with backbone_weights=/path/to/file, or train with pretrained: false")
    return cached


class TimmFeatures(nn.Module):
    """A timm model's ``forward_features`` as a feature map [N, C, h, w] (tokens laid on their grid)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model.forward_features(x)
        if out.dim() == 4:
            return out
        tokens = out[:, getattr(self.model, "num_prefix_tokens", 0):]  # [N, h*w, C]
        h, w = self.model.patch_embed.dynamic_feat_size(x.shape[-2:])
        return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], h, w)


def _timm_cached_file(pretrained_cfg: Dict) -> Optional[str]:
    """The weights of a timm model in the Hugging Face cache, without touching the network."""
    hub_id = pretrained_cfg.get("hf_hub_id")
    if not hub_id:
        return None
    from huggingface_hub import try_to_load_from_cache

    for filename in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(hub_id, filename)
        if isinstance(found, str):
            return found
    return None


def _timm_backbone(name: str, pretrained: bool, weights_path: Optional[str]) -> Backbone:
    import timm

    try:  # transformers take any input size (the longer-side resize gives many), padded to whole patches
        model = timm.create_model(name, pretrained=False, num_classes=0, global_pool="", dynamic_img_size=True,
                                  dynamic_img_pad=True)
    except TypeError:  # a convolutional network: any size already
        model = timm.create_model(name, pretrained=False, num_classes=0, global_pool="")
    cfg = dict(model.pretrained_cfg)
    source = RANDOM_INIT
    if pretrained:
        path = weights_path or _timm_cached_file(cfg)
        if path is None:
            raise PretrainedWeightsMissing(
                f"weights of timm:{name} are not in the Hugging Face cache (hub id {cfg.get('hf_hub_id')}); "
                f"fetch them where there is a network (python -c \"import timm; timm.create_model('{name}', "
                f"pretrained=True)\"), or pass a state dict with backbone_weights=/path/to/file, or train with "
                f"pretrained: false")
        state = _read_state(Path(path))
        missing, _ = model.load_state_dict(state, strict=False)
        if missing:
            raise InputError(f"{path}: backbone weights do not fit timm:{name}: missing {missing[:5]}")
        source = f"timm: {path}"
    mean, std = cfg.get("mean", IMAGENET_MEAN), cfg.get("std", IMAGENET_STD)
    return Backbone(TimmFeatures(model), int(model.num_features), tuple(mean), tuple(std), source)
