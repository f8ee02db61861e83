"""Re-ranking at Exact Street2Shop scale: time and peak memory of aqe, dba and diffusion against plain search.

    python tools/benchmark.py rerank [--scale 1.0 --dim 128]

404,683 shop descriptors split by the real category sizes, 20,357 street queries, D = 128 (Ibrahim et
al.'s embedding size; the memory of the graph and of diffusion does not depend on D), synthetic but
structured as in ``search-full``. Per method, in a fresh process each (so each peak is its own): fit
every category's gallery and rank its queries (top 20 over the re-ranker's keys); the baseline, in the
same run, is plain exact scoring of the same queries. Reported: seconds, peak resident memory, and the
dense [M, M] matrix the largest category would need, which the implementation never builds.
"""
from __future__ import annotations

import multiprocessing
import resource
import sys
import time
from typing import Dict

import numpy as np


def _run_method(method: str, scale: float, dim: int, results) -> None:
    """In a child process: every category fitted and searched with one method; its seconds and peak memory."""
    from .common import S2S_GALLERY, structured_descriptors
    from detret.search.rerank import Rerank, scorer, top_k

    rng = np.random.default_rng(0)
    total = sum(S2S_GALLERY.values())
    n_queries = int(round(20357 * scale))
    seconds = 0.0
    for cat, size in S2S_GALLERY.items():
        gallery, queries = structured_descriptors(rng, max(64, int(round(size * scale))),
                                                  max(1, int(round(n_queries * size / total))), dim)
        started = time.perf_counter()
        for keys in scorer(Rerank(method=method))(gallery, queries):
            top_k(keys, 20)
        seconds += time.perf_counter() - started
        print(f"  {method} {cat}: {len(gallery)} x {len(queries)} in {time.perf_counter() - started:.1f} s",
              file=sys.stderr)
    results.put({"method": method, "seconds": seconds,
                 "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20})


def bench_rerank(args) -> Dict:
    from .common import S2S_GALLERY

    from detret.search.rerank import RERANKERS

    context = multiprocessing.get_context("spawn")  # a fresh interpreter per method: its own peak memory
    out = {}
    for method in RERANKERS.names():
        queue = context.Queue()
        child = context.Process(target=_run_method, args=(method, args.scale, args.dim, queue))
        child.start()
        out[method] = queue.get()
        child.join()
    largest = max(max(64, int(round(v * args.scale))) for v in S2S_GALLERY.values())
    base = out["none"]
    return {"benchmark": "rerank", "scale": args.scale, "dim": args.dim,
            "gallery": sum(max(64, int(round(v * args.scale))) for v in S2S_GALLERY.values()),
            "queries": int(round(20357 * args.scale)), "largest_category": largest,
            "dense_matrix_of_largest_gib": largest ** 2 * 4 / 2**30,
            "methods": {m: {**r, "time_ratio": r["seconds"] / base["seconds"],
                            "memory_ratio": r["peak_rss_gib"] / base["peak_rss_gib"]} for m, r in out.items()}}
