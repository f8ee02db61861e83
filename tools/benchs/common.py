"""What every benchmark shares: the machine it ran on, best-of-rounds timing, Exact Street2Shop's
category sizes and synthetic descriptors shaped like them."""
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np


# Shop photos per category of Exact Street2Shop (Kiapour et al. 2015; 404,683 in all), for the category split.
S2S_GALLERY = {"bags": 16308, "belts": 1252, "dresses": 169827, "eyewear": 1595, "footwear": 75943,
               "hats": 2551, "leggings": 8219, "outerwear": 34695, "pants": 7640, "skirts": 18281,
               "tops": 68372}


def machine() -> Dict:
    import torch

    from detret.search.faiss_lib import faiss, faiss_blas_core

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), None) if Path("/proc/cpuinfo").is_file() else None
    return {"python": platform.python_version(), "cpu": model or platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "numpy": np.__version__, "faiss": faiss.__version__,
            "faiss_gpus": faiss.get_num_gpus(), "faiss_blas_kernels": faiss_blas_core(), "torch_threads": torch.get_num_threads()}


def best_of(fns: Dict[str, Callable[[], object]], repeat: int) -> Dict[str, float]:
    """The best time of each function over `repeat` rounds, run in turn within each round
    (baseline, ours, baseline, ours, ...), so that a slow spell of this shared machine
    falls on both sides rather than on whichever ran second."""
    times: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: min(ts) for name, ts in times.items()}


def split_by_category(n: int, rng: np.random.Generator) -> List[str]:
    cats = list(S2S_GALLERY)
    p = np.array([S2S_GALLERY[c] for c in cats], float)
    return list(rng.choice(cats, size=n, p=p / p.sum()))


def structured_descriptors(rng: np.random.Generator, n_gallery: int, n_queries: int, dim: int):
    """(gallery [n_gallery, dim], queries [n_queries, dim]), L2-normalised: each product a random direction,
    its shop photos and street queries noisy copies of it (queries noisier), so neighbours mean something."""
    n_products = max(1, n_gallery // 3)
    centres = rng.standard_normal((n_products, dim), dtype=np.float32)
    gallery = centres[rng.integers(0, n_products, n_gallery)] + 0.6 * rng.standard_normal((n_gallery, dim),
                                                                                          dtype=np.float32)
    queries = centres[rng.integers(0, n_products, n_queries)] + 1.0 * rng.standard_normal((n_queries, dim),
                                                                                          dtype=np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    return gallery, queries


def sub(**kwargs) -> argparse.Namespace:
    return argparse.Namespace(**kwargs)
