"""OpenVINO for detret's exported models: the same ONNX graphs as the onnxruntime engine, compiled by OpenVINO.

OpenVINO reads ONNX directly (the detector's graph, its int8 QDQ twin and the descriptor networks'), so one
export serves both engines. :class:`OpenVinoSession` answers the two calls detret makes of an onnxruntime
session (``get_outputs()`` and ``run(names, feeds)``), each ``run`` on its own infer request so that threads of
the service may run at once. openvino is an optional dependency (``pip install 'detret[export]'``).
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..errors import InputError


def openvino():
    try:
        import openvino as ov
    except ImportError as exc:
        raise InputError(f"the openvino engine needs the openvino package ({exc}); pip install 'detret[export]'") \
            from exc
    return ov


class OpenVinoSession:
    """An ONNX graph compiled by OpenVINO for the CPU (or ``device`` "gpu" where OpenVINO has one)."""

    def __init__(self, path: Path, device: str = "cpu", threads: Optional[int] = None) -> None:
        import onnx

        ov = openvino()
        target = "GPU" if device.startswith(("gpu", "cuda")) else "CPU"
        config = {"INFERENCE_NUM_THREADS": str(int(threads))} if threads and target == "CPU" else {}
        try:
            self.compiled = ov.Core().compile_model(ov.Core().read_model(str(path)), target, config)
        except Exception as exc:   # OpenVINO raises its own RuntimeError subclasses
            raise InputError(f"{path}: OpenVINO cannot compile this graph for {target} ({exc})") from exc
        names = [o.name for o in onnx.load(str(path), load_external_data=False).graph.output]
        # each compiled output carries the ONNX output's name among its tensor names
        self._position = {n: next(i for i, o in enumerate(self.compiled.outputs) if n in o.get_names())
                          for n in names}
        self._names = names

    def get_outputs(self) -> List[SimpleNamespace]:
        return [SimpleNamespace(name=n) for n in self._names]

    def run(self, names: Optional[Sequence[str]], feeds: Dict[str, np.ndarray]) -> List[np.ndarray]:
        request = self.compiled.create_infer_request()
        request.infer(feeds)
        return [np.array(request.get_output_tensor(self._position[n]).data)
                for n in (names if names is not None else self._names)]
