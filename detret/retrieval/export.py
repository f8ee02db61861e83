"""`detret export`: a trained retrieval network as an ONNX or TorchScript file, for serving without detret.

Folder written (``--out DIR``)::

    DIR/shop.onnx (or .ts)     the network: normalised photos [N, 3, H, W] float32 -> descriptors [N, D]
    DIR/street.onnx            only for a two-stream network: the street photos' stream
    DIR/meta.json              how to feed and read it (below)

``meta.json``::

    {"format": "detret.export/1", "source": "<checkpoint path>", "source_sha256": "...",
     "export_format": "onnx" | "torchscript", "files": {"shop": "shop.onnx", "street": ...},
     "input": {"name": "image", "layout": "NCHW", "dtype": "float32", "colour": "RGB, [0, 1] then
               (x - mean) / std", "mean": [...], "std": [...], "image_size": 224, "resize": "longest",
               "dynamic_axes": ["batch", "height", "width"] or ["batch"]},
     "output": {"name": "descriptor", "dim": 512, "l2_normalised": true},
     "meta": {... the checkpoint's own meta ...}}

Queries (street photos) go through ``files.street`` when it is there, gallery photos through
``files.shop``; the descriptors are compared by inner product, as detret's FAISS indexes do.

Sizes: the network takes any height and width (``dynamic_axes`` lists them) except with R-MAC,
whose region grid is computed from the feature map's size in Python: that graph is fixed to the
size it was exported at (``image_size`` x ``image_size``; feed square inputs, ``resize: square``).
ONNX goes through torch's exporter (``torch.onnx.export(dynamo=True)``, needs the ``onnx`` and
``onnxscript`` packages: ``pip install 'detret[export]'``), TorchScript through ``torch.jit.trace``.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Dict, List

import torch
from torch import nn

from ..errors import InputError
from ..runs.atomic import atomic_path, atomic_write_json
from .model import DOMAINS, RetrievalNet, load_checkpoint
from .pooling import POOLINGS

EXPORT_FORMAT = "detret.export/1"
FORMATS = {"onnx": ".onnx", "torchscript": ".ts"}


class OneStream(nn.Module):
    """The network of one domain as a plain ``forward(image) -> descriptor`` module."""

    def __init__(self, model: RetrievalNet, domain: str) -> None:
        super().__init__()
        self.net = model.stream(domain)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image)


def fixed_size(model: RetrievalNet) -> bool:
    """Whether the exported graph holds only for the example's size (R-MAC's region grid)."""
    return POOLINGS.get(model.meta.get("pooling"), "pooling of the checkpoint").fixed_size


def _example(model: RetrievalNet) -> torch.Tensor:
    size = int(model.meta["image_size"])
    return torch.randn(2, 3, size, size if fixed_size(model) else max(32, size * 3 // 4))


def _export_onnx(module: nn.Module, example: torch.Tensor, path: Path, dynamic: bool) -> None:
    try:
        import onnx  # noqa: F401 - torch's exporter needs it
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise InputError(f"exporting to ONNX needs the onnx and onnxscript packages ({exc}); "
                         f"pip install 'detret[export]'") from exc
    shapes = {"image": {0: "batch", 2: "height", 3: "width"} if dynamic else {0: "batch"}}
    with atomic_path(path) as tmp:
        program = torch.onnx.export(module, (example,), dynamo=True, dynamic_shapes=shapes, input_names=["image"],
                                    output_names=["descriptor"], verbose=False)
        program.save(str(tmp))


def _export_torchscript(module: nn.Module, example: torch.Tensor, path: Path) -> None:
    # torch now deprecates TorchScript for torch.export/ONNX; it is still what many C++ and mobile
    # deployments load, so it stays a format here, without the warning.
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.trace(module, example, check_trace=False).save(str(tmp))


def export_network(checkpoint: Path, out: Path, export_format: str) -> Dict:
    """Write the folder above for the checkpoint at `checkpoint`; returns meta.json's content."""
    if export_format not in FORMATS:
        raise InputError(f"export format {export_format!r} is not one of {', '.join(FORMATS)}")
    model, _ = load_checkpoint(checkpoint)
    model = model.float().eval()
    out.mkdir(parents=True, exist_ok=True)
    domains: List[str] = list(DOMAINS) if model.street is not None else ["shop"]
    example, dynamic = _example(model), not fixed_size(model)
    files = {}
    for domain in domains:
        module = OneStream(model, domain).eval()
        path = out / f"{domain}{FORMATS[export_format]}"
        if export_format == "onnx":
            _export_onnx(module, example, path, dynamic)
        else:
            _export_torchscript(module, example, path)
        files[domain] = path.name
    meta = model.meta
    record = {"format": EXPORT_FORMAT, "source": str(checkpoint),
              "source_sha256": hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest(),
              "export_format": export_format, "files": files,
              "input": {"name": "image", "layout": "NCHW", "dtype": "float32",
                        "colour": "RGB, [0, 1] then (x - mean) / std", "mean": meta["mean"], "std": meta["std"],
                        "image_size": meta["image_size"], "resize": meta["resize"],
                        "dynamic_axes": ["batch", "height", "width"] if dynamic else ["batch"]},
              "output": {"name": "descriptor", "dim": model.dim, "l2_normalised": True},
              "meta": json.loads(json.dumps(meta, default=str))}
    atomic_write_json(out / "meta.json", record)
    return record
