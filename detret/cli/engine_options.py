"""The --engine / --precision / --detector-precision options of the commands that run a catalogue's models."""
from __future__ import annotations

from typing import Optional

import typer

from ..config.choices import Engine, EngineChoice, Precision


def engine_option() -> Engine:
    return typer.Option(None, "--engine", help="What runs the models: torch, or onnxruntime (the catalogue's models "
                                               "exported once into CATALOGUE/engines/; the detector then runs "
                                               "without Detectron2). Default: as the catalogue was built.")


def precision_option() -> Precision:
    return typer.Option(Precision.FP32, "--precision", help="fp32; bf16 (torch); int8 (onnxruntime: static "
                                                             "quantization calibrated on the catalogue's photos).")


def detector_precision_option() -> Precision:
    return typer.Option(None, "--detector-precision", help="The detector's precision when it differs from "
                                                            "--precision's, e.g. fp32 beside int8 descriptors.")


def engine_choice(engine: Optional[Engine], precision: Precision,
                  detector_precision: Optional[Precision]) -> Optional[EngineChoice]:
    """None (as the catalogue was built) unless --engine is given."""
    if engine is None:
        if precision != Precision.FP32 or detector_precision is not None:
            raise typer.BadParameter("--precision/--detector-precision need --engine", param_hint="--engine")
        return None
    return EngineChoice(engine.value, precision.value, detector_precision.value if detector_precision else None)
