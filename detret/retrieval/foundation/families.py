"""Each library's own way to load a saved model, preprocess a photo and embed it.

A family knows (1) which files of a folder in its own format it needs (:func:`folder_files`), and
(2) how to load the model folder detret keeps into ``(encoder, preprocess)`` (:func:`load_family`):
``preprocess(PIL image) -> [3, H, W]`` is the library's own evaluation transform, ``encoder([N, 3, H, W])
-> [N, D]`` its image embedding (not yet L2-normalised):

- open_clip: ``create_model_and_transforms`` (``local-dir:`` for a hub-format folder, or a built-in
  architecture with ``pretrained=<weights file>``); ``encode_image``; ``preprocess_val``.
- timm: ``create_model(..., num_classes=0)`` (``local-dir:`` folder, or a built-in architecture with the
  weights file as ``pretrained_cfg_overlay``): the pooled pre-logits features; ``resolve_model_data_config``
  + ``create_transform``.
- hf: ``AutoModel`` / ``AutoImageProcessor.from_pretrained(folder)``; ``get_image_features`` where the
  model has it (CLIP, SigLIP), else the pooled output or the CLS token (DINOv2, ViT).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

from ...errors import DetretError, InputError, MissingFileError

# Weight files in each library's order of preference (one is taken: a hub repo often holds several formats)
WEIGHTS = {
    "open_clip": ["open_clip_model.safetensors", "open_clip_pytorch_model.safetensors", "open_clip_pytorch_model.bin",
                  "model.safetensors", "pytorch_model.bin"],
    "timm": ["model.safetensors", "pytorch_model.bin"],
    "hf": ["model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json"],
}
CONFIGS = {"open_clip": ["open_clip_config.json"], "timm": ["config.json"],
           "hf": ["config.json", "preprocessor_config.json"]}
PACKAGES = {"open_clip": "open_clip_torch", "timm": "timm", "hf": "transformers"}

Encoder = Callable[[torch.Tensor], torch.Tensor]


def require_library(library: str):
    """The library's module, or an error naming the package to install."""
    try:
        if library == "open_clip":
            import open_clip as module
        elif library == "timm":
            import timm as module
        else:
            import transformers as module
    except ImportError as exc:
        raise MissingFileError(f"{library} descriptors need the package {PACKAGES[library]} "
                               f"(pip install 'detret[foundation]'): {exc}") from exc
    return module


def folder_files(library: str, folder: Path) -> List[str]:
    """The files (relative names) of ``folder``, a model saved in ``library``'s own format, that loading reads."""
    missing = [c for c in CONFIGS[library] if not (folder / c).is_file()]
    if missing:
        raise InputError(f"{folder}: not a {library} model folder (no {', '.join(missing)}); save it with the "
                         f"library's own function (see docs/day-one.md)")
    weights = next((w for w in WEIGHTS[library] if (folder / w).is_file()), None)
    if weights is None:
        raise MissingFileError(f"{folder}: no weights file ({' or '.join(WEIGHTS[library])})")
    shards = _index_shards(folder / weights) if weights.endswith(".index.json") else []
    return CONFIGS[library] + [weights] + shards


def _index_shards(index: Path) -> List[str]:
    import json

    names = sorted(set(json.loads(index.read_text()).get("weight_map", {}).values()))
    for n in names:
        if not (index.parent / n).is_file() or "/" in n or n.startswith("."):
            raise MissingFileError(f"{index}: shard {n!r} is missing")
    return names


def _pil_transform(transform: Callable) -> Callable:
    return lambda image: transform(image)


def _load_open_clip(folder: Path, manifest: Dict) -> Tuple[nn.Module, Callable, Encoder]:
    open_clip = require_library("open_clip")
    if manifest["layout"] == "folder":
        model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{folder}")
    else:
        model, _, preprocess = open_clip.create_model_and_transforms(
            manifest["architecture"], pretrained=str(folder / manifest["weights_file"]))
    return model, _pil_transform(preprocess), lambda x: model.encode_image(x)


def _load_timm(folder: Path, manifest: Dict) -> Tuple[nn.Module, Callable, Encoder]:
    timm = require_library("timm")
    from timm.data import create_transform, resolve_model_data_config

    if manifest["layout"] == "folder":
        model = timm.create_model(f"local-dir:{folder}", pretrained=True, num_classes=0)
    else:
        model = timm.create_model(manifest["architecture"], pretrained=True, num_classes=0,
                                  pretrained_cfg_overlay={"file": str(folder / manifest["weights_file"])})
    transform = create_transform(**resolve_model_data_config(model), is_training=False)
    return model, _pil_transform(transform), lambda x: model(x)


def _hf_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if hasattr(model, "get_image_features"):  # CLIP, SigLIP: the projected image embedding
        out = model.get_image_features(pixel_values=x)
        return out if torch.is_tensor(out) else out.pooler_output   # transformers >= 5 returns an output object
    out = model(pixel_values=x)
    pooled: Optional[torch.Tensor] = getattr(out, "pooler_output", None)
    return pooled if pooled is not None else out.last_hidden_state[:, 0]   # the CLS token


def _load_hf(folder: Path, manifest: Dict) -> Tuple[nn.Module, Callable, Encoder]:
    require_library("hf")
    from transformers import AutoImageProcessor, AutoModel

    model = AutoModel.from_pretrained(str(folder), local_files_only=True)
    processor = AutoImageProcessor.from_pretrained(str(folder), local_files_only=True)
    return (model, lambda image: processor(images=image, return_tensors="pt")["pixel_values"][0],
            lambda x: _hf_features(model, x))


LOADERS = {"open_clip": _load_open_clip, "timm": _load_timm, "hf": _load_hf}


def load_family(library: str, folder: Path, manifest: Dict) -> Tuple[nn.Module, Callable, Encoder]:
    """(model, preprocess, encoder) of a model folder of ``library`` (see the module docstring)."""
    try:
        return LOADERS[library](folder, manifest)
    except DetretError:
        raise
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise InputError(f"{folder}: {library} cannot load this model ({type(exc).__name__}: {exc})") from exc
