"""A trained retrieval network run by ONNX Runtime, called as the torch network is: ``model(batch, domain)``.

The network is exported once with ``detret export``'s own code (:func:`.export.export_network`: one graph per
stream, ``meta.json``) into a folder kept beside the checkpoint (``engines/<stem>-<sha256[:16]>/``, or a
catalogue's ``engines/``); ``int8`` adds ``<domain>.int8.onnx`` per stream, quantized statically
(``detret.utils.onnx_runtime.quantize_int8``) on gallery crops prepared exactly as the network reads them, and
records them in ``meta.json``::

    "int8": {"files": {"shop": "shop.int8.onnx", ...}, "calibration_crops": 64, "calibration_sha256": "...",
             "quantized_ops": ["Conv", "MatMul", "Gemm"]}

Batches keep their size: the graphs' batch axis is dynamic, so ``embed_crops``' batches of one shape are one
session run. Preprocessing (resize and normalisation) stays detret's torch code, as for the torch engine.
Foundation models (open_clip, timm, transformers) are not exported here: they run on the torch engine.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from ..errors import InputError
from ..runs.atomic import atomic_write_json
from ..runs.manifest import sha256_file

CALIBRATION_CROPS = 64


def engine_folder(checkpoint: Path, under: Optional[Path] = None) -> Path:
    checkpoint = Path(checkpoint)
    base = Path(under) if under is not None else checkpoint.parent / "engines"
    return base / f"{checkpoint.stem}-{sha256_file(checkpoint)[:16]}"


def _exported(folder: Path, checkpoint: Path) -> Optional[Dict]:
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    ok = meta.get("source_sha256") == sha256_file(checkpoint) and meta.get("export_format") == "onnx" and \
        all((folder / name).is_file() for name in meta.get("files", {}).values())
    return meta if ok else None


def ensure_exported(checkpoint: Path, folder: Path) -> Dict:
    """``folder`` holding the checkpoint's ONNX graphs (exported if missing or of another checkpoint)."""
    from .export import export_network

    return _exported(folder, checkpoint) or export_network(Path(checkpoint), folder, "onnx")


def add_int8(folder: Path, meta: Dict, feeds: Sequence[np.ndarray], source: str) -> Dict:
    """Quantize each stream of the exported network, calibrated on ``feeds`` ([1, 3, H, W] float32 inputs)."""
    from ..utils.onnx_runtime import QUANTIZED_OPS, quantize_int8

    files = {}
    for domain, name in meta["files"].items():
        files[domain] = f"{domain}.int8.onnx"
        quantize_int8(folder / name, folder / files[domain], [{"image": f} for f in feeds])
    digest = hashlib.sha256()
    for f in feeds:
        digest.update(np.ascontiguousarray(f).tobytes())
    meta = {**meta, "int8": {"files": files, "calibration_crops": len(feeds), "calibration_sha256": digest.hexdigest(),
                             "calibration_source": source, "quantized_ops": list(QUANTIZED_OPS)}}
    atomic_write_json(folder / "meta.json", meta)
    return meta


class OnnxDescriptorNet:
    """The exported streams of a retrieval network in ONNX Runtime sessions (see the module docstring)."""

    def __init__(self, folder: Path, meta: Dict, precision: str, device: str = "cpu",
                 threads: Optional[int] = None) -> None:
        from ..utils.onnx_runtime import session

        files = meta["int8"]["files"] if precision == "int8" else meta["files"]
        self.folder, self.precision = Path(folder), precision
        self.meta, self.dim = meta["meta"], int(meta["output"]["dim"])
        self.sessions = {domain: session(self.folder / name, device, threads) for domain, name in files.items()}

    def __call__(self, batch: torch.Tensor, domain: str = "shop") -> torch.Tensor:
        run = self.sessions.get(domain, self.sessions["shop"])   # one stream serves both domains
        out = run.run(["descriptor"], {"image": np.ascontiguousarray(batch.detach().cpu().numpy(), np.float32)})
        return torch.from_numpy(out[0])


def open_descriptor(checkpoint: Path, precision: str, device: str, calibration: Callable[[], List[np.ndarray]],
                    source: str, under: Optional[Path] = None) -> OnnxDescriptorNet:
    """The checkpoint's network on ONNX Runtime at ``precision`` (exported, and for int8 quantized, on first use
    and kept). ``calibration()``: crops ([H, W, 3] uint8 RGB) of gallery photos, read only for int8."""
    from .foundation import is_foundation_folder
    from .preprocess import network_input

    if is_foundation_folder(Path(checkpoint)):
        raise InputError(f"{checkpoint}: a foundation model runs on the torch engine (--engine torch); the "
                         "onnxruntime engine exports detret's trained retrieval networks")
    folder = engine_folder(checkpoint, under)
    meta = ensure_exported(checkpoint, folder)
    if precision == "int8" and "int8" not in meta:
        crops = calibration()
        if not crops:
            raise InputError(f"{checkpoint}: int8 quantization needs gallery crops to calibrate on; none were found")
        feeds = [network_input(c, meta["meta"])[None].numpy() for c in crops[:CALIBRATION_CROPS]]
        meta = add_int8(folder, meta, feeds, source)
    return OnnxDescriptorNet(folder, meta, precision, device)
