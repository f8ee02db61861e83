"""The torch device, a parameter of every stage (never a hard-coded `.cuda()`)."""
from __future__ import annotations

import re

import torch

_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def resolve_device(name: str) -> torch.device:
    """"auto" -> CUDA when present, else CPU; an explicit device must exist.

    Raises ValueError before any work starts when the config asks for a GPU
    this machine does not have.
    """
    if not _DEVICE_RE.match(name):
        raise ValueError(f"device {name!r} is not one of auto, cpu, mps, cuda, cuda:N")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} asked for, but torch sees no CUDA GPU here; use --set device=cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r} asked for, but only {torch.cuda.device_count()} CUDA device(s) exist")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' asked for, but MPS is not available here")
    return device
