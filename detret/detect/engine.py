"""The detector's ONNX Runtime engine as a folder on disk: the exported graph, its int8 twin and a manifest.

Folder (``detector-<key>/``, kept beside the weights it came from, or in a catalogue's ``engines/``)::

    manifest.json         what follows
    detector.onnx         the fp32 graph (:mod:`.onnx_export`)
    detector.int8.onnx    only once int8 was asked for: the graph quantized (detret.utils.onnx_runtime)

``manifest.json``::

    {"format": "detret.detector-engine/1", "key": "<sha256 of what decides the graph>",
     "source": {"weights_sha256": "...", "detector_cfg_sha256": "..."},
     "input": {"format": "BGR" | "RGB", "min_size": 800, "max_size": 1333, "resize": "shortest edge, bilinear"},
     "labels": [... ModaNet labels, the graph's class indices ...], "masks": false, "mask_threshold": 0.5,
     "outputs": ["boxes", "scores", "classes", "objectness"(, "masks")], "opset": 17,
     "files": {"fp32": "detector.onnx", "int8": "detector.int8.onnx"},
     "int8": {"calibration_photos": 64, "calibration_sha256": "<hash of the calibration photos' pixels>",
              "quantized_ops": ["Conv", "MatMul", "Gemm"]},
     "exported_with": {"torch": "...", "detectron2": "...", "onnxruntime": "..."}}

The key hashes the weights' content and the inference config (``detector_identity``), so a folder is reused
only for the detector it was made from; a folder whose manifest or graph is missing is made again.
:func:`read_engine` and :class:`.portable.PortableDetector` need neither Detectron2 nor torch.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from ..errors import InputError, MissingFileError
from ..runs.atomic import atomic_write_json
from .portable import PortableDetector, graph_input

ENGINE_FORMAT = "detret.detector-engine/1"
MANIFEST = "manifest.json"
FILES = {"fp32": "detector.onnx", "int8": "detector.int8.onnx"}
MASK_THRESHOLD = 0.5   # Detectron2's detector_postprocess default, which GeneralizedRCNN uses
# What int8 quantizes: the backbone, where most of the compute is. RPN and ROI heads stay fp32: their outputs are the
# objectness and scores the crop rule thresholds and ranks (measured: quantizing them too moved more crops).
# (the full demo's detector: 87.3% of crops kept with every convolution quantized, 92.7% with the backbone only)
INT8_MODULES = ("/backbone/",)


def read_engine(folder: Path) -> Dict:
    """The manifest of an engine folder, checked."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise MissingFileError(f"{path}: no detector engine here (detret catalogue engine, or --engine onnxruntime)")
    try:
        spec = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable detector engine manifest ({exc})") from exc
    if not isinstance(spec, dict) or spec.get("format") != ENGINE_FORMAT:
        raise InputError(f"{path}: format {spec.get('format') if isinstance(spec, dict) else None!r}, "
                         f"expected {ENGINE_FORMAT!r}")
    return spec


def load_engine(folder: Path, precision: str, device: str = "cpu", threads: Optional[int] = None
                ) -> PortableDetector:
    """The engine folder's graph of ``precision`` in an ONNX Runtime session."""
    spec = read_engine(folder)
    graph = Path(folder) / spec["files"].get(precision, FILES[precision])
    if precision not in spec["files"] or not graph.is_file():
        raise MissingFileError(f"{graph}: the detector engine in {folder} has no {precision} graph "
                               f"(it has {', '.join(spec['files'])})")
    return PortableDetector(graph, spec, device, threads)


def engine_key(weights_sha256: str, identity: str) -> str:
    return hashlib.sha256(f"{ENGINE_FORMAT}\n{weights_sha256}\n{identity}".encode()).hexdigest()


def _versions() -> Dict[str, str]:
    import detectron2
    import onnxruntime
    import torch

    return {"torch": torch.__version__, "detectron2": detectron2.__version__, "onnxruntime": onnxruntime.__version__}


def export_engine(cfg, weights: str, folder: Path, example_rgb: np.ndarray) -> Dict:
    """Write the fp32 graph and the manifest of the detector ``cfg`` + ``weights`` into ``folder``."""
    from ..runs.manifest import sha256_file
    from .config import detector_identity
    from .inference import inference_cfg
    from ..data.categories import load_categories
    from .onnx_export import OPSET, export_detector

    cfg = _fp32(inference_cfg(cfg))
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    outputs = export_detector(cfg, weights, folder / FILES["fp32"], example_rgb)
    identity = detector_identity(cfg)
    spec = {"format": ENGINE_FORMAT, "key": engine_key(sha256_file(Path(weights)), identity),
            "source": {"weights_sha256": sha256_file(Path(weights)),
                       "detector_cfg_sha256": hashlib.sha256(identity.encode()).hexdigest()},
            "input": {"format": cfg.INPUT.FORMAT, "min_size": int(cfg.INPUT.MIN_SIZE_TEST),
                      "max_size": int(cfg.INPUT.MAX_SIZE_TEST), "resize": "shortest edge, bilinear"},
            "labels": list(load_categories().modanet), "masks": bool(cfg.MODEL.MASK_ON),
            "mask_threshold": MASK_THRESHOLD, "outputs": outputs, "opset": OPSET, "files": {"fp32": FILES["fp32"]},
            "exported_with": _versions()}
    atomic_write_json(folder / MANIFEST, spec)
    return spec


def _fp32(cfg):
    """The inference config with the torch engine's fp32 (the graph is traced from it)."""
    out = cfg.clone()
    out.defrost()
    out.DETRET.DETECT.ENGINE, out.DETRET.DETECT.PRECISION = "torch", "fp32"
    out.freeze()
    return out


def add_int8(folder: Path, photos: Sequence[np.ndarray], source: str) -> Dict:
    """Quantize the folder's fp32 graph, calibrated on ``photos`` ([H, W, 3] uint8 RGB); updates the manifest."""
    from ..utils.onnx_runtime import QUANTIZED_OPS, nodes_under, quantize_int8

    spec = read_engine(folder)
    inp = spec["input"]
    feeds = [{"image": graph_input(p, int(inp["min_size"]), int(inp["max_size"]), inp["format"])} for p in photos]
    fp32 = Path(folder) / FILES["fp32"]
    quantize_int8(fp32, Path(folder) / FILES["int8"], feeds, nodes=nodes_under(fp32, INT8_MODULES))
    digest = hashlib.sha256()
    for p in photos:
        digest.update(np.ascontiguousarray(p).tobytes())
    spec["files"]["int8"] = FILES["int8"]
    spec["int8"] = {"calibration_photos": len(photos), "calibration_sha256": digest.hexdigest(),
                    "calibration_source": source, "quantized_ops": list(QUANTIZED_OPS),
                    "quantized_modules": list(INT8_MODULES)}
    atomic_write_json(Path(folder) / MANIFEST, spec)
    return spec


def _key(cfg, weights: str) -> str:
    from ..runs.manifest import sha256_file
    from .config import detector_identity
    from .inference import inference_cfg

    return engine_key(sha256_file(Path(weights)), detector_identity(_fp32(inference_cfg(cfg))))


def engine_folder(cfg, weights: str, under: Optional[Path] = None) -> Path:
    """Where the engine of this detector is kept: ``under`` (default: ``engines/`` beside the weights)."""
    return Path(under if under is not None else Path(weights).parent / "engines") / f"detector-{_key(cfg, weights)[:16]}"


def ensure_engine(cfg, weights: str, folder: Path, precision: str,
                  calibration: Callable[[int], Sequence[np.ndarray]], source: str) -> Path:
    """``folder`` holding this detector's engine with a ``precision`` graph, made if missing (or if it holds
    another detector's). ``calibration(n)``: n gallery photos ([H, W, 3] uint8 RGB), the first for the trace;
    for int8, ``DETRET.DETECT.CALIBRATION_PHOTOS`` of them calibrate the activations."""
    folder = Path(folder)
    key = _key(cfg, weights)
    spec = None
    try:
        spec = read_engine(folder)
    except (MissingFileError, InputError):
        pass
    if spec is None or spec.get("key") != key or not (folder / FILES["fp32"]).is_file():
        photos = calibration(1)
        if not photos:
            raise InputError(f"exporting the detector to {folder} needs one photo to trace it on; none was found")
        spec = export_engine(cfg, weights, folder, photos[0])
    if precision == "int8" and ("int8" not in spec["files"] or not (folder / FILES["int8"]).is_file()):
        add_int8(folder, calibration(int(cfg.DETRET.DETECT.CALIBRATION_PHOTOS)), source)
    return folder


def photos_reader(paths: Sequence[Path]) -> Callable[[int], List[np.ndarray]]:
    """``calibration(n)`` over ``paths``: the first n of them that decode ([H, W, 3] uint8 RGB)."""
    from ..data.images import first_readable, read_rgb

    return lambda n: first_readable(paths, n, lambda path: read_rgb(Path(path)))


def open_detector(cfg, weights: str, device, calibration: Callable[[int], Sequence[np.ndarray]], source: str,
                  under: Optional[Path] = None):
    """The detector as ``DETRET.DETECT.ENGINE`` runs it: Detectron2's model (torch), or the exported graph in
    ONNX Runtime (made on first use and kept, see :func:`engine_folder`). ``calibration``/``source``: the
    gallery photos that trace and calibrate it, and what they are (recorded in the manifest)."""
    from .inference import load_detector

    if cfg.DETRET.DETECT.ENGINE == "torch":
        return load_detector(cfg, weights, device)
    precision = cfg.DETRET.DETECT.PRECISION
    folder = ensure_engine(cfg, weights, engine_folder(cfg, weights, under), precision, calibration, source)
    return load_engine(folder, precision, str(device))
