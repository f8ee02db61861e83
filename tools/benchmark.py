#!/usr/bin/env python
"""Benchmarks as ratios against a baseline measured in the same run on the same data.

    python tools/benchmark.py search [--gallery 40000 --queries 2000 --dim 512]
    python tools/benchmark.py eval   [--gallery 20000 --queries 2000 --dim 256]
    python tools/benchmark.py embed  [--arch resnet50 --size 224 --images 64 --batch 16]
    python tools/benchmark.py detect --config runs/demo/demo.yaml [--photos 200]
    python tools/benchmark.py search-full [--scale 1.0 --compressed PCA256,Flat]

- search: detret's per-category FAISS search (exact inner product) against a NumPy
  brute force (matmul + argpartition + sort) on the same descriptors, split by the
  real Exact Street2Shop category proportions; checks that the top-20 are identical.
- eval: full-gallery mAP by counting, per positive, the items ranked before it
  (detret.evaluate.metrics.full_gallery_ap) against the sort-based definition
  (sort the whole gallery, then eq. 4); checks that the values agree.
- embed: batched channels-last bf16-autocast embedding against a per-image eager fp32
  loop with the same model and crops; reports the lowest cosine similarity between them.
- detect: `detret detect`'s batched detection against Detectron2's DefaultPredictor photo
  by photo, same photos and weights; reports the share of photos whose crops agree (IoU >= 0.95).

Each prints and writes JSON (``--out``) with absolute times, the ratio and the
machine description. The machine is noisy: every timing is the best of `--repeat`.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from typing import Callable, Dict, List

import numpy as np

# Shop photos per category of Exact Street2Shop (Kiapour et al. 2015; 404,683 in all), for the category split.
S2S_GALLERY = {"bags": 16308, "belts": 1252, "dresses": 169827, "eyewear": 1595, "footwear": 75943,
               "hats": 2551, "leggings": 8219, "outerwear": 34695, "pants": 7640, "skirts": 18281,
               "tops": 68372}


def machine() -> Dict:
    import torch

    from detret.search.faiss_lib import faiss, faiss_blas_core

    return {"python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "numpy": np.__version__, "faiss": faiss.__version__,
            "faiss_gpus": faiss.get_num_gpus(), "faiss_blas_kernels": faiss_blas_core(), "torch_threads": torch.get_num_threads()}


def best_of(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _split(n: int, rng: np.random.Generator) -> List[str]:
    cats = list(S2S_GALLERY)
    p = np.array([S2S_GALLERY[c] for c in cats], float)
    return list(rng.choice(cats, size=n, p=p / p.sum()))


def bench_search(args) -> Dict:
    from detret.search.index import build_index, search

    rng = np.random.default_rng(0)
    g = rng.normal(size=(args.gallery, args.dim)).astype(np.float32)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    q = rng.normal(size=(args.queries, args.dim)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    gcat, qcat = np.array(_split(len(g), rng)), np.array(_split(len(q), rng))
    cats = sorted(set(gcat))
    groups = {c: (np.flatnonzero(gcat == c), np.flatnonzero(qcat == c)) for c in cats}
    indexes = {c: build_index(g[gi]) for c, (gi, _) in groups.items()}
    k = 20

    def faiss_search():
        out = {}
        for c, (gi, qi) in groups.items():
            if len(qi):
                out[c] = gi[search(indexes[c], q[qi], k)[1]]
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
                rows.append(cand[order])
            out[c] = gi[np.array(rows)]
        return out

    a, b = faiss_search(), numpy_search()
    identical = all(np.array_equal(a[c], b[c]) for c in a)
    # Where the lists differ, the swapped items must tie at float32 precision (FAISS and
    # NumPy sum the inner products in different orders).
    worst_gap = 0.0
    for c in a:
        qi = groups[c][1]
        for row, (x, y) in enumerate(zip(a[c], b[c])):
            if not np.array_equal(x, y):
                worst_gap = max(worst_gap, float(np.abs(g[x] @ q[qi[row]] - g[y] @ q[qi[row]]).max()))
    t_faiss, t_numpy = best_of(faiss_search, args.repeat), best_of(numpy_search, args.repeat)
    return {"benchmark": "search", "gallery": args.gallery, "queries": args.queries, "dim": args.dim, "k": k,
            "faiss_s": t_faiss, "numpy_bruteforce_s": t_numpy, "speedup": t_numpy / t_faiss,
            "identical_top20": identical, "max_score_gap_where_different": worst_gap,
            "identical_up_to_float_ties": worst_gap < 1e-5, "queries_per_s": args.queries / t_faiss}


def bench_search_full(args) -> Dict:
    """Search at full Exact Street2Shop scale: 404,683 shop descriptors split by the real
    category sizes, 20,357 street queries, D = 2048, float32 (3.3 GB of gallery). Descriptors
    are synthetic but structured: each product is a random direction, its shop photos and
    street queries noisy copies of it (queries noisier), so neighbours are meaningful.
    Reports the exact per-category search's time and the process's peak memory, then a
    compressed index (``--compressed``, a FAISS factory string; default a learned PCA
    projection to 256 dimensions) with its recall@20 against exact search and its memory ratio.
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
        n_products = max(1, n_g // 3)
        centres = rng.standard_normal((n_products, dim), dtype=np.float32)
        owner = rng.integers(0, n_products, n_g)
        gallery = centres[owner] + 0.6 * rng.standard_normal((n_g, dim), dtype=np.float32)
        gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
        queries = centres[rng.integers(0, n_products, n_q)] + 1.0 * rng.standard_normal((n_q, dim), dtype=np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
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
        del comp, gallery, centres
        print(f"  {cat}: {n_g} gallery x {n_q} queries done", file=sys.stderr)
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    n_gallery = sum(max(512, int(round(v * args.scale))) for v in S2S_GALLERY.values())
    return {"benchmark": "search-full", "scale": args.scale, "gallery": n_gallery, "queries": n_queries, "dim": dim,
            "k": k, "exact_build_s": build_t, "exact_search_s": exact_t, "exact_queries_per_s": n_queries / exact_t,
            "exact_index_gib": exact_bytes / 2**30, "compressed": args.compressed,
            "compressed_build_s": comp_build_t, "compressed_search_s": comp_t,
            "compressed_index_gib": comp_bytes / 2**30, "memory_ratio": exact_bytes / comp_bytes,
            "recall_at_20": hits / (n_queries * k), "peak_rss_gib": peak_gib}


def bench_eval(args) -> Dict:
    from detret.evaluate.metrics import average_precision, full_gallery_ap

    rng = np.random.default_rng(1)
    scores = rng.normal(size=(args.queries, args.gallery)).astype(np.float32)
    positives = np.zeros_like(scores, dtype=bool)
    for i in range(args.queries):
        positives[i, rng.choice(args.gallery, size=int(rng.integers(1, 6)), replace=False)] = True

    def fast():
        return [full_gallery_ap(scores[i], positives[i]) for i in range(args.queries)]

    def by_sort():
        out = []
        for i in range(args.queries):
            order = np.lexsort((np.arange(args.gallery), -scores[i]))
            out.append(average_precision(positives[i, order].astype(int), int(positives[i].sum())))
        return out

    agree = np.allclose(fast(), by_sort(), atol=1e-9)
    t_fast, t_sort = best_of(fast, args.repeat), best_of(by_sort, args.repeat)
    return {"benchmark": "eval", "gallery": args.gallery, "queries": args.queries, "fast_s": t_fast,
            "sort_reference_s": t_sort, "speedup": t_sort / t_fast, "values_agree": bool(agree)}


def bench_embed(args) -> Dict:
    """detret's batched (channels-last, inference mode, bf16 autocast) embedding of crops vs a
    plain per-image eager fp32 loop with the same model, crops and resolution. Decoding is
    left out of both (the crops are in memory), so this measures the network side only."""
    import torch

    from detret.embed.stage import embed_crops
    from detret.retrieval.model import build_retrieval_net
    from detret.retrieval.preprocess import resize_normalise, to_tensor

    torch.manual_seed(0)
    model = build_retrieval_net(args.arch, dim=512, pretrained=False, image_size=args.size, resize="square").eval()
    rng = np.random.default_rng(2)
    crops = [rng.integers(0, 255, (int(rng.integers(200, 400)), int(rng.integers(150, 300)), 3), dtype=np.uint8)
             for _ in range(args.images)]
    meta = model.meta

    def baseline():
        out = []
        with torch.no_grad():
            for c in crops:
                x = resize_normalise(to_tensor(c), meta["image_size"], meta["resize"], meta["mean"], meta["std"])
                out.append(model(x[None])[0])
        return torch.stack(out)

    def batched(precision):
        parts = [embed_crops(model, crops[i:i + args.batch], (1.0,), "cpu", precision)
                 for i in range(0, len(crops), args.batch)]
        return torch.cat(parts)

    ref = baseline()
    cos_fp32 = float((ref * batched("fp32")).sum(1).min())
    cos_bf16 = float((ref * batched("bf16")).sum(1).min())
    t_base = best_of(baseline, args.repeat)
    t_fp32 = best_of(lambda: batched("fp32"), args.repeat)
    t_bf16 = best_of(lambda: batched("bf16"), args.repeat)
    return {"benchmark": "embed", "architecture": args.arch, "image_size": args.size, "images": args.images,
            "batch": args.batch, "baseline_per_image_fp32_s": t_base, "batched_fp32_s": t_fp32,
            "batched_bf16_s": t_bf16, "speedup_fp32": t_base / t_fp32, "speedup_bf16": t_base / t_bf16,
            "images_per_s_bf16": args.images / t_bf16, "min_cosine_fp32": cos_fp32, "min_cosine_bf16": cos_bf16}


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 1.0


def bench_detect(args) -> Dict:
    """`detret detect`'s batched detection (decoding in DataLoader workers, batches of
    DETRET.DETECT.BATCH_SIZE, inference mode) against Detectron2's DefaultPredictor called
    photo by photo, on the same shop photos with the same trained detector; both decode
    the photos and choose the crop with the paper's policy. Needs a run with a trained
    detector (`--config runs/demo/demo.yaml` after `detret demo`)."""
    import cv2
    import torch
    from detectron2.engine import DefaultPredictor

    from detret.config.pipeline import load_pipeline_config
    from detret.data.categories import load_categories
    from detret.data.street2shop import load_street2shop
    from detret.detect.crops import select_crop
    from detret.detect.inference import detect_photos, inference_cfg, load_detector, to_detections
    from detret.detect.stage import choose_detector

    if not args.config:
        raise SystemExit("detect: pass --config of a run with a trained detector, e.g. runs/demo/demo.yaml "
                         "after `detret demo` (or `detret demo --quick`)")
    pcfg = load_pipeline_config(args.config, ["device=cpu"])
    device = torch.device("cpu")
    cats = load_categories(pcfg.data.category_map)
    data = load_street2shop(pcfg.data.street2shop.root, splits=())
    shop = sorted(((s.photo_id, c) for c in data.categories for s in data.gallery[c]))[:args.photos]
    items = [(pid, data.photo_path(pid)) for pid, _ in shop]
    category = dict(shop)
    choice = choose_detector(pcfg, device, [])
    cfg = inference_cfg(choice.cfg)
    cfg.defrost()
    cfg.MODEL.WEIGHTS = choice.weights
    cfg.MODEL.DEVICE = "cpu"
    cfg.freeze()
    thresh, policy = float(cfg.DETRET.CROP.OBJECTNESS_THRESH), cfg.DETRET.CROP.POLICY

    def crop_of(pid, dets, size):
        return select_crop(dets, category[pid], cats.street2shop_to_modanet, size, objectness_thresh=thresh,
                           policy=policy).box_xyxy

    predictor = DefaultPredictor(cfg)

    def baseline():
        crops = {}
        for pid, path in items:
            bgr = cv2.imread(str(path))
            inst = predictor(bgr)["instances"].to("cpu")
            crops[pid] = crop_of(pid, to_detections(inst, cats.modanet), (bgr.shape[1], bgr.shape[0]))
        return crops

    model = load_detector(cfg, choice.weights, device)

    def batched():
        found = []
        for _ in detect_photos(model, cfg, items, cats.modanet, device, found.extend):
            pass
        return {r.photo_id: crop_of(r.photo_id, r.detections, (r.width, r.height)) for r in found}

    ref, ours = baseline(), batched()
    ious = [_iou(ref[pid], ours[pid]) for pid, _ in items]
    t_base = best_of(baseline, args.repeat)
    t_ours = best_of(batched, args.repeat)
    return {"benchmark": "detect", "photos": len(items), "batch_size": int(cfg.DETRET.DETECT.BATCH_SIZE),
            "workers": int(cfg.DETRET.DETECT.NUM_WORKERS), "baseline_default_predictor_s": t_base,
            "detret_batched_s": t_ours, "speedup": t_base / t_ours, "photos_per_s": len(items) / t_ours,
            "share_crops_iou_ge_0.95": float(np.mean([v >= 0.95 for v in ious])), "min_crop_iou": float(min(ious))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", choices=["search", "search-full", "eval", "embed", "detect"])
    parser.add_argument("--scale", type=float, default=1.0, help="search-full: share of the real counts")
    parser.add_argument("--compressed", default="PCA256,Flat", help="search-full: compressed FAISS index")
    parser.add_argument("--config", default=None, help="detect: pipeline config of a run with a trained detector")
    parser.add_argument("--photos", type=int, default=200, help="detect: shop photos")
    parser.add_argument("--arch", default="resnet50", help="embed: backbone")
    parser.add_argument("--size", type=int, default=224, help="embed: image size (square)")
    parser.add_argument("--images", type=int, default=64, help="embed: crops")
    parser.add_argument("--batch", type=int, default=16, help="embed: batch size")
    parser.add_argument("--gallery", type=int, default=None)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default=None, help="write the result JSON here")
    args = parser.parse_args(argv)
    if args.gallery is None:
        args.gallery = 40000 if args.which == "search" else 20000
    if args.which == "search-full" and args.dim == 512 and "--dim" not in (argv or sys.argv):
        args.dim = 2048
    result = {"search": bench_search, "search-full": bench_search_full, "eval": bench_eval, "embed": bench_embed,
              "detect": bench_detect}[args.which](args)
    result["machine"] = machine()
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
