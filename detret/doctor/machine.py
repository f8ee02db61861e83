"""The machine's side of ``detret doctor``: devices, packages, Detectron2's route, FAISS, Milvus, Chromium."""
from __future__ import annotations

import importlib.metadata as metadata
import importlib.util
import os
import platform
import shutil
from pathlib import Path
from typing import List

from .checks import Check

# (distribution, what detret uses it for, required): versions are read from the installed metadata
PACKAGES = [
    ("torch", "every model", True), ("torchvision", "backbones, ROIAlign and NMS", True),
    ("sal-detectron2", "the detector (the republished wheel)", False), ("detectron2", "the detector", False),
    ("faiss-gpu", "search (its CPU indexes run without a GPU)", False), ("faiss-cpu", "search", False),
    ("timm", "backbones and timm: descriptors", True), ("pytorch-metric-learning", "the seeds' losses", True),
    ("fastapi", "the service", True), ("uvicorn", "the service", True), ("numpy", "everything", True),
    ("opencv-python-headless", "photos", True), ("imagehash", "the day-one benchmark's pHash", False),
    ("pymilvus", "--vectors milvus:", False), ("milvus-lite", "--vectors milvus:PATH.db", False),
    ("open_clip_torch", "open_clip: descriptors", False), ("transformers", "hf: descriptors", False),
    ("onnxruntime", "--engine onnxruntime (and export checks)", False), ("playwright", "the page's browser test", False),
]
CPU_FLAGS = {"avx2": "AVX2", "avx512f": "AVX-512", "avx512_vnni": "AVX-512 VNNI (int8)", "avx_vnni": "AVX-VNNI (int8)",
             "avx512_bf16": "AVX-512 BF16", "amx_bf16": "AMX BF16",
             "amx_tile": "AMX tiles", "asimd": "NEON (ARM)"}


def _version(dist: str):
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def package_checks() -> List[Check]:
    out = []
    for dist, use, required in PACKAGES:
        version = _version(dist)
        if version is not None:
            out.append(Check("package", dist, "ok", f"{version} ({use})"))
        elif required:
            out.append(Check("package", dist, "fail", f"not installed ({use})", "bash tools/install.sh"))
    return out


def cpu_flags() -> List[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    line = next((ln for ln in text.splitlines() if ln.startswith(("flags", "Features"))), "")
    present = set(line.split(":", 1)[-1].split())
    return [label for flag, label in CPU_FLAGS.items() if flag in present]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_checks() -> List[Check]:
    import torch

    flags = cpu_flags()
    bf16 = "AMX BF16" in flags or "AVX-512 BF16" in flags
    out = [Check("device", "cpu", "ok", f"{_cpu_model()}, {os.cpu_count()} logical cores; flags: "
                 f"{', '.join(flags) or 'none of ' + ', '.join(CPU_FLAGS.values())}; --precision bf16 "
                 f"{'has native support' if bf16 else 'is emulated (slow) on this CPU'}")]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            out.append(Check("device", f"cuda:{i}", "ok", f"{p.name}, {p.total_memory / 2**30:.0f} GiB, compute "
                             f"capability {p.major}.{p.minor}, bf16 {'yes' if p.major >= 8 else 'no'}; CUDA "
                             f"{torch.version.cuda}"))
    else:
        out.append(Check("device", "cuda", "info", f"no CUDA GPU visible (torch {torch.__version__}, built for CUDA "
                         f"{torch.version.cuda or 'none'}): everything runs on the CPU"))
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        out.append(Check("device", "mps", "ok", "Apple GPU (MPS) available"))
    return out


def detectron2_checks() -> List[Check]:
    if importlib.util.find_spec("detectron2") is None:
        return [Check("detectron2", "installed", "fail", "Detectron2 is not installed: no detection, no crops",
                      "bash tools/install.sh (DETRET_DETECTRON2=wheel or source)")]
    compiled = importlib.util.find_spec("detectron2._C") is not None
    if compiled:
        return [Check("detectron2", "route", "ok", "built from source, with its compiled ops (detectron2._C)")]
    return [Check("detectron2", "route", "info",
                  "the wheel without compiled ops (detectron2._C absent): Mask R-CNN FPN runs on torchvision's "
                  "ROIAlign and NMS; ruled out: deformable convolutions, rotated boxes (ROIAlignRotated, "
                  "RotatedRPN), Detectron2's own CUDA kernels, and COCOEvaluator's fast C++ evaluation (it falls "
                  "back to pycocotools)", "DETRET_DETECTRON2=source bash tools/install.sh where GitHub is reachable")]


def faiss_checks() -> List[Check]:
    if importlib.util.find_spec("faiss") is None:
        return [Check("faiss", "installed", "fail", "FAISS is not installed: no search", "bash tools/install.sh")]
    import faiss

    gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    return [Check("faiss", "gpus", "ok" if gpus else "info",
                  f"FAISS {faiss.__version__}: {gpus} GPU(s) usable" + ("" if gpus else " (CPU indexes only)"))]


def milvus_checks() -> List[Check]:
    client, lite = (importlib.util.find_spec(m) is not None for m in ("pymilvus", "milvus_lite"))
    state = "ok" if client and lite else "warn"
    detail = (f"pymilvus {'installed' if client else 'missing'}, Milvus Lite {'installed' if lite else 'missing'}; "
              "a Milvus server is reached only when a catalogue names one")
    return [Check("milvus", "client", state, detail, "" if state == "ok" else "pip install 'detret[milvus]'")]


def foundation_checks() -> List[Check]:
    out = []
    for module, family, extra in (("open_clip", "open_clip:", "foundation"), ("transformers", "hf:", "foundation"),
                                  ("timm", "timm:", None)):
        found = importlib.util.find_spec(module) is not None
        out.append(Check("foundation", module, "ok" if found else "warn",
                         f"{family} descriptors {'available' if found else 'unavailable'}",
                         "" if found else f"pip install 'detret[{extra}]'"))
    return out


def browser_checks() -> List[Check]:
    chromium = os.environ.get("DETRET_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium:
        return [Check("browser", "chromium", "ok", f"{chromium} (the page's browser test)")]
    return [Check("browser", "chromium", "warn", "no Chromium: the page's browser test cannot run",
                  "apt-get install chromium, or set DETRET_CHROMIUM")]


def machine_checks() -> List[Check]:
    return (device_checks() + package_checks() + detectron2_checks() + faiss_checks() + milvus_checks()
            + foundation_checks() + browser_checks())
