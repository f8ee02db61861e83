"""search: detret's per-category exact search (``search.index.search`` over a Flat index: NumPy's GEMM,
see ``search/exact.py``) against a NumPy brute force (matmul + argpartition + sort) on the same
descriptors, split by the real Exact Street2Shop category proportions; checks that the top-20 are identical.
FAISS's own ``IndexFlatIP.search`` on the same indexes is timed beside them (``faiss_own_s``): the product
on the BLAS its wheel bundles."""
from __future__ import annotations

from typing import Dict

import numpy as np

from .common import best_of, split_by_category


def bench_search(args) -> Dict:
    from detret.search.index import build_index, search

    rng = np.random.default_rng(0)
    g = rng.normal(size=(args.gallery, args.dim)).astype(np.float32)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    q = rng.normal(size=(args.queries, args.dim)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    gcat, qcat = np.array(split_by_category(len(g), rng)), np.array(split_by_category(len(q), rng))
    cats = sorted(set(gcat))
    groups = {c: (np.flatnonzero(gcat == c), np.flatnonzero(qcat == c)) for c in cats}
    indexes = {c: build_index(g[gi]) for c, (gi, _) in groups.items()}
    k = 20

    def detret_search():
        out = {}
        for c, (gi, qi) in groups.items():
            if len(qi):
                ids = search(indexes[c], q[qi], k)[1]
                out[c] = np.where(ids >= 0, gi[np.clip(ids, 0, None)], -1)  # -1 past a small category's end
        return out

    def numpy_search():
        out = {}
        for c, (gi, qi) in groups.items():
            if not len(qi):
                continue
            s = q[qi] @ g[gi].T
            kk = min(k, len(gi))
            part = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
            rows = []
            for i, cand in enumerate(part):
                order = np.lexsort((cand, -s[i, cand]))
                rows.append(np.concatenate([gi[cand[order]], np.full(k - kk, -1)]))
            out[c] = np.array(rows)
        return out

    a, b = detret_search(), numpy_search()
    identical = all(np.array_equal(a[c], b[c]) for c in a)
    # Where the lists differ, the swapped items must tie at float32 precision (FAISS and
    # NumPy sum the inner products in different orders).
    worst_gap = 0.0
    for c in a:
        qi = groups[c][1]
        for row, (x, y) in enumerate(zip(a[c], b[c])):
            if not np.array_equal(x, y):
                worst_gap = max(worst_gap, float(np.abs(g[x] @ q[qi[row]] - g[y] @ q[qi[row]]).max()))
    def numpy_matmul_only():
        return [q[qi] @ g[gi].T for gi, qi in groups.values() if len(qi)]

    def faiss_own():
        return [indexes[c].search(q[qi], k) for c, (gi, qi) in groups.items() if len(qi)]

    t = best_of({"detret": detret_search, "numpy": numpy_search, "matmul": numpy_matmul_only, "faiss_own": faiss_own},
                args.repeat)
    t_detret, t_numpy, t_matmul = t["detret"], t["numpy"], t["matmul"]
    return {"benchmark": "search", "numpy_matmul_only_s": t_matmul,
            # the share of NumPy's time in the products, which an exact fp32 search must also compute
            "numpy_matmul_share": t_matmul / t_numpy, "gallery": args.gallery, "queries": args.queries, "dim": args.dim, "k": k,
            "detret_s": t_detret, "numpy_bruteforce_s": t_numpy, "speedup": t_numpy / t_detret,
            "faiss_own_s": t["faiss_own"], "faiss_own_vs_numpy": t_numpy / t["faiss_own"],
            "identical_top20": identical, "max_score_gap_where_different": worst_gap,
            "identical_up_to_float_ties": worst_gap < 1e-5, "queries_per_s": args.queries / t_detret}
