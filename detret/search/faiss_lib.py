"""FAISS, imported so that its BLAS uses this CPU's vector units. Import faiss from here.

Exact FAISS search of a batch of queries is a BLAS ``sgemm`` plus a heap. The FAISS
wheels on PyPI (faiss-cpu and faiss-gpu 1.15) bundle OpenBLAS 0.3.15, whose run-time
CPU detection predates Sapphire Rapids and newer cores and falls back to its generic
"Prescott" kernels there (OpenBLAS issues #3453, #4267, fixed upstream in 0.3.19+).
Measured on this project's Xeon (AVX-512, AMX): a 2000 x 17000 x 2048 search took
3.9 s with "Prescott" and 0.56 s with the "SkylakeX" kernels; NumPy's newer OpenBLAS
detects the CPU itself and is not affected.

OpenBLAS reads ``OPENBLAS_CORETYPE`` once, when the library is loaded. So, when the
user has not set it, the variable is set from the CPU's flags for the moment faiss is
first imported, then removed again (child processes and other libraries see the
user's environment). A user's own ``OPENBLAS_CORETYPE`` always wins.
"""
from __future__ import annotations

import ctypes
import glob
import logging
import os
import sys
from pathlib import Path
from typing import Optional

_SKYLAKEX_FLAGS = {"avx512f", "avx512dq", "avx512cd", "avx512bw", "avx512vl"}
_HASWELL_FLAGS = {"avx2", "fma"}


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set:
    """The CPU feature flags the kernel reports (empty where there is no /proc/cpuinfo)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def openblas_coretype(flags: set) -> Optional[str]:
    """The OpenBLAS kernel family these CPU flags can run: "SkylakeX" (AVX-512), "Haswell"
    (AVX2 + FMA), or None (leave OpenBLAS's own detection alone)."""
    if _SKYLAKEX_FLAGS <= flags:
        return "SkylakeX"
    if _HASWELL_FLAGS <= flags:
        return "Haswell"
    return None


def _import_faiss(core: Optional[str]):
    """faiss, loaded with ``OPENBLAS_CORETYPE=core`` unless the user set it or faiss is loaded already."""
    if core is None or "faiss" in sys.modules or os.environ.get("OPENBLAS_CORETYPE"):
        import faiss

        return faiss
    before = os.environ.get("OPENBLAS_CORETYPE")  # None, or set but empty (which OpenBLAS ignores)
    os.environ["OPENBLAS_CORETYPE"] = core
    try:
        import faiss
    finally:
        if before is None:
            os.environ.pop("OPENBLAS_CORETYPE", None)
        else:
            os.environ["OPENBLAS_CORETYPE"] = before
    return faiss


_CORETYPE = openblas_coretype(cpu_flags())
_LOADED_BEFORE = "faiss" in sys.modules
faiss = _import_faiss(_CORETYPE)


def faiss_blas_core() -> Optional[str]:
    """The kernel family of the OpenBLAS that faiss's wheel bundles ("SkylakeX", "Prescott", ...),
    or None when faiss links another BLAS (a conda or source build)."""
    package = Path(faiss.__file__).resolve().parent.parent
    for path in sorted(glob.glob(str(package / "faiss*.libs" / "libopenblas*.so*"))):
        lib = ctypes.CDLL(path)  # already loaded by faiss: the same instance, not a second one
        lib.openblas_get_corename.restype = ctypes.c_char_p
        return lib.openblas_get_corename().decode()
    return None


def _warn_if_generic() -> None:
    """faiss imported before detret (so too late to choose its kernels) on a CPU that has better ones."""
    if _CORETYPE is not None and faiss_blas_core() == "Prescott":
        logging.getLogger(__name__).warning(
            "FAISS's bundled OpenBLAS runs its generic kernels on this CPU (faiss was imported before detret); "
            "exact search is several times slower. Set OPENBLAS_CORETYPE=%s in the environment, or import "
            "detret before faiss.", _CORETYPE)


if _LOADED_BEFORE:
    _warn_if_generic()
