"""A foundation model loaded as a descriptor model: the interface of a retrieval network for inference.

:class:`FoundationNet` has what ``embed``, ``query``, catalogues and the service use of a
:class:`~detret.retrieval.model.RetrievalNet`: ``forward(x [N, 3, H, W], domain) -> [N, D]`` L2-normalised,
``dim``, ``meta``, plus ``preprocess(crop [H, W, 3] uint8) -> [3, H, W]``, the library's own evaluation
transform (resize, centre crop or squash, normalisation), which the embedding code calls instead of
detret's resize-and-normalise. Both domains (street, shop) are embedded by the one image encoder.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from .families import load_family
from .folder import read_folder

FOUNDATION_FORMAT = "detret.foundation/1"


class FoundationNet(nn.Module):
    def __init__(self, model: nn.Module, preprocess: Callable, encoder: Callable, meta: Dict[str, Any]) -> None:
        super().__init__()
        self.model = model
        self._preprocess, self._encoder = preprocess, encoder
        self.meta = dict(meta)
        self._dim = int(self.meta.get("dim") or 0)

    def preprocess(self, crop_rgb: np.ndarray) -> torch.Tensor:
        """[H, W, 3] uint8 -> [3, H', W'] float, as the library prepares an image for this model."""
        return self._preprocess(Image.fromarray(np.ascontiguousarray(crop_rgb)).convert("RGB"))

    def forward(self, x: torch.Tensor, domain: str = "shop") -> torch.Tensor:
        """x [N, 3, H, W] preprocessed photos (either domain) -> L2-normalised descriptors [N, D]."""
        return F.normalize(self._encoder(x).float(), dim=1)

    @property
    def dim(self) -> int:
        return self._dim


def load_foundation(path: Path, device: torch.device | str = "cpu", verify: bool = True) -> FoundationNet:
    """The model folder at ``path`` (``folder.py``) loaded on ``device`` in eval mode; its dimension measured
    by embedding one blank image (libraries do not all say it in their config)."""
    folder = read_folder(Path(path), verify=verify)
    man = folder.manifest
    model, preprocess, encoder = load_family(man["library"], folder.path, man)
    model = model.to(device).eval()
    net = FoundationNet(model, preprocess, encoder, {**man, "path": str(folder.path)})
    probe = net.preprocess(np.full((32, 32, 3), 255, np.uint8)).unsqueeze(0).to(device)
    with torch.inference_mode():
        net._dim = int(net(probe).shape[1])
    net.meta["dim"] = net._dim
    net.meta["input_shape"] = list(probe.shape[1:])
    return net
