"""ONNX Runtime for detret's engines: sessions, and int8 static quantization calibrated on real inputs.

- :func:`session`: an ``InferenceSession`` on the device's execution provider (CUDA for ``cuda`` when
  onnxruntime-gpu provides it, else the CPU), ``threads`` intra-op threads (default: torch's thread count,
  so that ``serve --workers N`` splits the cores as it does for torch).
- :func:`quantize_int8`: ONNX Runtime's own static quantization (``quantize_static``, QDQ format, weights
  int8 per output channel, activations uint8 per tensor from the min/max seen on the calibration inputs).
  Only the compute-heavy operators (convolutions and matrix products) are quantized; proposals, NMS,
  RoiAlign and the softmax keep float32 so that the detector's choice of boxes stays the float graph's up to
  the features' rounding.

onnxruntime is an optional dependency (``pip install 'detret[export]'``); its absence is a clear error.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence

import numpy as np

from ..errors import InputError
from ..runs.atomic import atomic_path

QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")


def onnxruntime():
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise InputError(f"the onnxruntime engine needs the onnxruntime package ({exc}); "
                         "pip install 'detret[export]'") from exc
    return ort


def default_threads() -> int:
    try:
        import torch

        return int(torch.get_num_threads())
    except ImportError:   # a process without torch (a bundle served by onnxruntime alone)
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def providers(device: str) -> list:
    """The execution providers for ``device`` ("cpu", "cuda", "cuda:1"): CUDA when asked for and present."""
    ort = onnxruntime()
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise InputError(f"device {device!r}: this onnxruntime has no CUDA execution provider "
                             f"(it has {', '.join(ort.get_available_providers())}); pip install onnxruntime-gpu")
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def session(path: Path, device: str = "cpu", threads: Optional[int] = None, disabled_optimizers: Sequence[str] = ()):
    """An inference session of the graph at ``path`` (``disabled_optimizers``: ONNX Runtime graph rewrites to skip)."""
    ort = onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or default_threads())
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # idle threads sleep instead of spinning: they share the cores with photo decoding (DataLoader workers) and
    # with the service's other threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers(device),
                                    disabled_optimizers=list(disabled_optimizers))
    except Exception as exc:   # onnxruntime raises its own exception types (Fail, InvalidGraph, ...)
        raise InputError(f"{path}: onnxruntime cannot load this graph ({exc})") from exc


class _Reader:
    """ONNX Runtime's CalibrationDataReader over a sequence of feeds."""

    def __init__(self, feeds: Iterable[Dict[str, np.ndarray]]):
        self._feeds: Iterator[Dict[str, np.ndarray]] = iter(feeds)

    def get_next(self) -> Optional[Dict[str, np.ndarray]]:
        return next(self._feeds, None)


def nodes_under(source: Path, prefixes: Sequence[str], op_types: Sequence[str] = QUANTIZED_OPS) -> List[str]:
    """The names of the graph's ``op_types`` nodes whose name starts with one of ``prefixes`` (the exporter names
    a node by its module path, e.g. ``/backbone/bottom_up/res2/res2.0/conv1/Conv``)."""
    import onnx

    graph = onnx.load(str(source), load_external_data=False).graph
    return [n.name for n in graph.node if n.op_type in op_types and n.name.startswith(tuple(prefixes))]


def quantize_int8(source: Path, out: Path, feeds: Sequence[Dict[str, np.ndarray]],
                  op_types: Sequence[str] = QUANTIZED_OPS, nodes: Optional[Sequence[str]] = None) -> None:
    """Write ``out``: the graph at ``source`` with its ``op_types`` quantized to int8 (only ``nodes`` when given),
    calibrated on ``feeds`` (one dict of input name -> array per calibration sample)."""
    onnxruntime()
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if not feeds:
        raise InputError(f"{source}: int8 quantization needs calibration photos; none were given")
    with atomic_path(Path(out)) as tmp:
        quantize_static(str(source), str(tmp), _Reader(feeds), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=list(op_types), per_channel=True,
                        nodes_to_quantize=list(nodes) if nodes is not None else None,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
