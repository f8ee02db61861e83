"""Tiny foundation models (random weights) saved in each library's own format, for tests: never downloaded.

- :func:`save_open_clip`: open_clip's hub folder (``open_clip_config.json`` written by open_clip's own
  ``save_config_for_hf``, weights as ``open_clip_model.safetensors``), loaded through ``local-dir:``;
- :func:`save_timm`: timm's ``save_for_hf`` folder of its ``test_vit`` architecture; :func:`save_timm_file`:
  that architecture's state dict as one file (a built-in architecture + ``--weights FILE``);
- :func:`save_hf_dinov2` / :func:`save_hf_clip`: transformers ``save_pretrained`` folders (a DINOv2 and a
  CLIP vision-language model), with an image processor.
"""
from __future__ import annotations

from pathlib import Path

import torch

TINY_OPEN_CLIP = {
    "embed_dim": 24,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
}


def save_open_clip(folder: Path, seed: int = 0) -> Path:
    import open_clip
    import safetensors.torch
    from open_clip.push_to_hf_hub import save_config_for_hf

    torch.manual_seed(seed)
    model = open_clip.CLIP(**TINY_OPEN_CLIP)
    model.visual.image_mean, model.visual.image_std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)   # as create_model sets
    folder.mkdir(parents=True, exist_ok=True)
    safetensors.torch.save_file(model.state_dict(), str(folder / "open_clip_model.safetensors"))
    save_config_for_hf(model, folder / "open_clip_config.json", model_config=TINY_OPEN_CLIP)
    return folder


def save_timm(folder: Path, seed: int = 0) -> Path:
    import timm
    from timm.models._hub import save_for_hf

    torch.manual_seed(seed)
    model = timm.create_model("test_vit", pretrained=False)
    save_for_hf(model, str(folder), safe_serialization=True)
    return folder


def save_timm_file(path: Path, seed: int = 0) -> Path:
    import timm

    torch.manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(timm.create_model("test_vit", pretrained=False).state_dict(), path)
    return path


def _save_processor(folder: Path, size: int = 32) -> None:
    from transformers import ViTImageProcessor

    ViTImageProcessor(size={"height": size, "width": size}, image_mean=[0.5, 0.4, 0.3],
                      image_std=[0.2, 0.25, 0.3]).save_pretrained(str(folder))


def save_hf_dinov2(folder: Path, seed: int = 0) -> Path:
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(seed)
    config = Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                          image_size=32, patch_size=8)
    Dinov2Model(config).save_pretrained(str(folder))
    _save_processor(folder)
    return folder


def save_hf_clip(folder: Path, seed: int = 0) -> Path:
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config={"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32,
                     "vocab_size": 64, "max_position_embeddings": 8,
                     "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1},
        vision_config={"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
                       "image_size": 32, "patch_size": 8},
        projection_dim=20)
    CLIPModel(config).save_pretrained(str(folder))
    _save_processor(folder)
    return folder
