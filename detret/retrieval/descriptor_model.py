"""A descriptor model on disk, whatever made it: a trained checkpoint (``.pt``, :mod:`.model`) or a
foundation model folder (:mod:`.foundation`). The functions here are what the stages that only *use* a
descriptor model (embed, query, catalogues, the service) call: load it, hash it, copy it."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable, List, Optional, Union

import numpy as np

import torch

from ..runs.atomic import atomic_path
from ..runs.manifest import sha256_file
from .foundation import FoundationNet, is_foundation_folder, load_foundation, read_folder
from .foundation.folder import copy_folder
from .model import RetrievalNet, load_checkpoint

DescriptorNet = Union[RetrievalNet, FoundationNet]


def load_descriptor_model(path: Path, device: torch.device | str = "cpu", engine: str = "torch",
                          precision: str = "fp32", calibration: Optional[Callable[[], List[np.ndarray]]] = None,
                          source: str = "", engines: Optional[Path] = None) -> DescriptorNet:
    """The model at ``path`` on ``device``, in eval mode; on the onnxruntime ``engine`` its exported graphs
    (:mod:`.onnx_engine`: made on first use and kept in ``engines``, default beside the checkpoint; int8
    calibrated on ``calibration()``'s gallery crops, described by ``source``)."""
    if engine == "onnxruntime":
        from .onnx_engine import open_descriptor

        return open_descriptor(Path(path), precision, str(device), calibration or list, source, engines)
    if is_foundation_folder(Path(path)):
        return load_foundation(Path(path), device)
    return load_checkpoint(Path(path), device)[0]


def model_sha256(path: Path) -> str:
    """What identifies the model's content: a checkpoint file's sha256, a foundation folder's identity (the
    hash of its weight files and layout, every file checked)."""
    if is_foundation_folder(Path(path)):
        return read_folder(Path(path)).identity
    return sha256_file(Path(path))


def model_suffix(path: Path) -> str:
    """The suffix a copy of the model keeps (``.pt``; ``.foundation`` for a folder)."""
    return ".foundation" if is_foundation_folder(Path(path)) else Path(path).suffix


def copy_model(src: Path, dst: Path) -> None:
    """A copy of the model at ``dst`` (a folder's weights hard-linked where possible; a file written atomically)."""
    if is_foundation_folder(Path(src)):
        copy_folder(Path(src), Path(dst))
        return
    with atomic_path(Path(dst)) as tmp:
        shutil.copyfile(src, tmp)
