"""search-full: search at full Exact Street2Shop scale (404,683 shop descriptors of D = 2048, 20,357
queries), exact and compressed, against NumPy."""
from __future__ import annotations

import sys
import time
from typing import Dict

import numpy as np

from .common import S2S_GALLERY, structured_descriptors


def bench_search_full(args) -> Dict:
    """Search at full Exact Street2Shop scale: 404,683 shop descriptors split by the real
    category sizes, 20,357 street queries, D = 2048, float32 (3.3 GB of gallery). Descriptors
    are synthetic but structured: each product is a random direction, its shop photos and
    street queries noisy copies of it (queries noisier), so neighbours are meaningful.
    Reports the exact per-category search's time and the process's peak memory, then a
    compressed index (``--compressed``, a FAISS factory string; default "SQ8", FAISS's
    8-bit scalar quantiser, 4x smaller) with its recall@20 against exact search and its memory ratio.
    ``--scale`` shrinks every count (e.g. 0.1) for a quicker run."""
    import resource

    from detret.search.faiss_lib import faiss
    from detret.search.index import build_index, search

    rng = np.random.default_rng(0)
    k, dim = 20, args.dim
    n_queries = int(round(20357 * args.scale))
    total = sum(S2S_GALLERY.values())
    exact_t = build_t = comp_t = comp_build_t = 0.0
    exact_bytes = comp_bytes = 0
    hits = 0
    for cat, g_size in S2S_GALLERY.items():
        n_g = max(512, int(round(g_size * args.scale)))  # the floor matters only with --scale < 1
        n_q = max(1, int(round(n_queries * g_size / total)))
        gallery, queries = structured_descriptors(rng, n_g, n_q, dim)
        t0 = time.perf_counter()
        index = build_index(gallery, "Flat")
        build_t += time.perf_counter() - t0
        t0 = time.perf_counter()
        _, exact_ids = search(index, queries, k)
        exact_t += time.perf_counter() - t0
        exact_bytes += gallery.nbytes
        del index
        t0 = time.perf_counter()
        comp = build_index(gallery, args.compressed)
        comp_build_t += time.perf_counter() - t0
        comp_bytes += faiss.serialize_index(comp).nbytes
        t0 = time.perf_counter()
        _, comp_ids = search(comp, queries, k)
        comp_t += time.perf_counter() - t0
        hits += sum(len(set(a) & set(b)) for a, b in zip(exact_ids.tolist(), comp_ids.tolist()))
        del comp, gallery
        print(f"  {cat}: {n_g} gallery x {n_q} queries done", file=sys.stderr)
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    n_gallery = sum(max(512, int(round(v * args.scale))) for v in S2S_GALLERY.values())
    return {"benchmark": "search-full", "scale": args.scale, "gallery": n_gallery, "queries": n_queries, "dim": dim,
            "k": k, "exact_build_s": build_t, "exact_search_s": exact_t, "exact_queries_per_s": n_queries / exact_t,
            "exact_index_gib": exact_bytes / 2**30, "compressed": args.compressed,
            "compressed_build_s": comp_build_t, "compressed_search_s": comp_t,
            "compressed_index_gib": comp_bytes / 2**30, "memory_ratio": exact_bytes / comp_bytes,
            "recall_at_20": hits / (n_queries * k), "peak_rss_gib": peak_gib}
