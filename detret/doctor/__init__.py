"""`detret doctor`: what this machine has and whether the configured pipeline can run on it.

``machine.py`` looks at devices (CUDA, MPS, the CPU's flags), packages and their versions, which Detectron2
is installed and what it rules out, FAISS's GPUs, Milvus, the foundation-model libraries and Chromium;
``pipeline.py`` at the pipeline config: its device, detector weights and retrieval models. Nothing is
downloaded, no model is loaded and no file is written: a check only imports, stats and reads.
"""
from .checks import Check, exit_status
from .machine import machine_checks
from .pipeline import pipeline_checks

__all__ = ["Check", "exit_status", "machine_checks", "pipeline_checks"]
