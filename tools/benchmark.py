#!/usr/bin/env python
"""Benchmarks as ratios against a baseline measured in the same run on the same data.

    python tools/benchmark.py all --quick        # every target below, met or not, in a few minutes
    python tools/benchmark.py all [--config runs/demo/demo.yaml]   # the README's sizes
    python tools/benchmark.py search [--gallery 40000 --queries 2000 --dim 512]
    python tools/benchmark.py eval   [--gallery 20000 --queries 2000 --dim 256]
    python tools/benchmark.py bootstrap [--resamples 1000]
    python tools/benchmark.py rerank [--scale 1.0 --dim 128]
    python tools/benchmark.py embed  [--arch resnet50 --size 224 --images 64 --batch 16]
    python tools/benchmark.py detect --config runs/demo/demo.yaml [--photos 200]
    python tools/benchmark.py search-full [--scale 1.0 --compressed SQ8]
    python tools/benchmark.py embed-map --config runs/demo/demo.yaml [--model tri-crops]
    python tools/benchmark.py serve --config runs/demo/demo.yaml [--model tri-crops --requests 40]
    python tools/benchmark.py catalogue-add --config runs/demo/demo.yaml [--new 50]
    python tools/benchmark.py serve-hostile --config runs/demo/demo.yaml [--requests 40 --slow 4]

- search: detret's per-category FAISS search (exact inner product) against a NumPy
  brute force (matmul + argpartition + sort) on the same descriptors, split by the
  real Exact Street2Shop category proportions; checks that the top-20 are identical.
- eval: full-gallery mAP by counting, per positive, the items ranked before it
  (detret.retrieval.metrics.full_gallery_ap) against the sort-based definition
  (sort the whole gallery, then eq. 4); checks that the values agree.
- bootstrap: eval's 95% intervals (1,000 resamples within each category) at Exact Street2Shop's
  scale (20,357 queries, 8 runs) against computing the metrics without them; the seconds added.
- rerank: aqe, dba and diffusion (tools/bench_rerank.py) at Exact Street2Shop scale against plain
  exact scoring in the same run: seconds and peak memory per method, and the dense [M, M] matrix
  the largest category would need (never built).
- embed: batched channels-last bf16-autocast embedding against a per-image eager fp32
  loop with the same model and crops; reports the lowest cosine similarity between them.
- detect: `detret detect`'s batched detection (fp32, and bf16 bottom-up) against Detectron2's
  DefaultPredictor photo by photo, same photos and weights; reports the share of photos whose
  crops agree (IoU >= 0.95).
- embed-map: a demo model's mean mAP with bf16 descriptors against its fp32 ones.
- serve, catalogue-add: the catalogue and the service (tools/bench_service.py): HTTP search against
  `detret query`, latency percentiles and throughput with 1 and 8 clients, memory against catalogue
  size; the cost of adding 50 photos to catalogues of 1,000 and 20,000 photos.
- serve-hostile (tools/bench_hostile.py): 8 normal clients searching with detection, without and then
  with one hostile client (thin, EPS, DDS and 40 MP photos, unauthenticated 64 MiB bodies, slow bodies
  and headers, invented methods): the normal clients' errors and p95 ratio, the hostile requests'
  answers, the server's peak memory above its memory after warm-up.
- all: runs the demo (or reuses ``--config``), then all of the above, and writes
  ``benchmarks/report[_quick].md`` and ``.json``: each target, met or not, and why not.

Each prints and writes JSON (``--out``) with absolute times, the ratio and the
machine description. The machine is noisy: every timing is the best of `--repeat`
rounds, and within a round the baseline and detret's code run in turn.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
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
    def numpy_matmul_only():
        return [q[qi] @ g[gi].T for gi, qi in groups.values() if len(qi)]

    t = best_of({"faiss": faiss_search, "numpy": numpy_search, "matmul": numpy_matmul_only}, args.repeat)
    t_faiss, t_numpy, t_matmul = t["faiss"], t["numpy"], t["matmul"]
    return {"benchmark": "search", "numpy_matmul_only_s": t_matmul,
            # the share of NumPy's time in the products, which an exact fp32 search must also compute
            "numpy_matmul_share": t_matmul / t_numpy, "gallery": args.gallery, "queries": args.queries, "dim": args.dim, "k": k,
            "faiss_s": t_faiss, "numpy_bruteforce_s": t_numpy, "speedup": t_numpy / t_faiss,
            "identical_top20": identical, "max_score_gap_where_different": worst_gap,
            "identical_up_to_float_ties": worst_gap < 1e-5, "queries_per_s": args.queries / t_faiss}


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


def bench_eval(args) -> Dict:
    from detret.retrieval.metrics import average_precision, full_gallery_ap

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
    t = best_of({"fast": fast, "sort": by_sort}, args.repeat)
    t_fast, t_sort = t["fast"], t["sort"]
    return {"benchmark": "eval", "gallery": args.gallery, "queries": args.queries, "fast_s": t_fast,
            "sort_reference_s": t_sort, "speedup": t_sort / t_fast, "values_agree": bool(agree)}


def bench_bootstrap(args) -> Dict:
    """`eval --bootstrap 1000` at Exact Street2Shop's scale: 20,357 queries split by the real gallery
    proportions, 8 runs (Table 1's columns), mAP and Acc@1/20, against the metrics without intervals
    (the positives' ranks given: what eval adds on top of its search)."""
    from detret.evaluate.protocol import metrics_from_ranks

    rng = np.random.default_rng(5)
    total = sum(S2S_GALLERY.values())
    runs = []
    for _ in range(8):
        per_cat = {}
        for cat, g_size in S2S_GALLERY.items():
            n_q = max(1, int(round(20357 * g_size / total)))
            ranks = [np.sort(rng.choice(np.arange(1, 2000), size=int(rng.integers(1, 4)), replace=False))
                     for _ in range(n_q)]
            per_cat[cat] = {"gallery": g_size, "ranks": ranks}
        runs.append(per_cat)

    def plain():
        return [metrics_from_ranks(r, (1, 20)) for r in runs]

    def with_intervals():
        return [metrics_from_ranks(r, (1, 20), bootstrap=args.resamples, seed=0) for r in runs]

    t = best_of({"plain": plain, "bootstrap": with_intervals}, args.repeat)
    return {"benchmark": "bootstrap", "queries": sum(len(c["ranks"]) for c in runs[0].values()), "runs": len(runs),
            "resamples": args.resamples, "metrics_s": t["plain"], "metrics_with_intervals_s": t["bootstrap"],
            "added_s": t["bootstrap"] - t["plain"], "ratio": t["bootstrap"] / t["plain"]}


def bench_embed(args) -> Dict:
    """detret's batched (channels-last, inference mode, bf16 autocast) embedding of crops vs a
    plain per-image eager fp32 loop with the same model, crops and resolution. Decoding is
    left out of both (the crops are in memory), so this measures the network side only."""
    import torch

    from detret.embed.inference import embed_crops
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
    t = best_of({"base": baseline, "fp32": lambda: batched("fp32"), "bf16": lambda: batched("bf16")}, args.repeat)
    t_base, t_fp32, t_bf16 = t["base"], t["fp32"], t["bf16"]
    return {"benchmark": "embed", "architecture": args.arch, "image_size": args.size, "images": args.images,
            "batch": args.batch, "baseline_per_image_fp32_s": t_base, "batched_fp32_s": t_fp32,
            "batched_bf16_s": t_bf16, "speedup_fp32": t_base / t_fp32, "speedup_bf16": t_base / t_bf16,
            "images_per_s_bf16": args.images / t_bf16, "min_cosine_fp32": cos_fp32, "min_cosine_bf16": cos_bf16}


def bench_detect(args) -> Dict:
    """`detret detect`'s batched detection (decoding in DataLoader workers, batches of
    DETRET.DETECT.BATCH_SIZE, inference mode) against Detectron2's DefaultPredictor called
    photo by photo, on the same shop photos with the same trained detector; both decode
    the photos and choose the crop with the paper's policy. Needs a run with a trained
    detector (`--config runs/demo/demo.yaml` after `detret demo`)."""
    import cv2
    import torch
    from detectron2.engine import DefaultPredictor
    from detectron2.structures import Boxes
    from detectron2.structures.boxes import matched_pairwise_iou

    from detret.config.pipeline import load_pipeline_config
    from detret.data.categories import load_categories
    from detret.data.street2shop import load_street2shop
    from detret.detect.crops import select_crop
    from detret.detect.inference import detect_photos, inference_cfg, load_detector, to_detections
    from detret.detect.config import choose_detector

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

    def batched(precision):
        c = cfg.clone()
        c.defrost()
        c.DETRET.DETECT.PRECISION = precision
        c.freeze()
        model = load_detector(c, choice.weights, device)

        def run():
            found = []
            for _ in detect_photos(model, c, items, cats.modanet, device, found.extend):
                pass
            return {r.photo_id: crop_of(r.photo_id, r.detections, (r.width, r.height)) for r in found}
        return run

    ref = baseline()
    runs = {precision: batched(precision) for precision in ("fp32", "bf16")}
    crops = {precision: run() for precision, run in runs.items()}
    t = best_of({"base": baseline, **runs}, args.repeat)
    t_base = t["base"]
    detector = (f"R{cfg.MODEL.RESNETS.DEPTH}-FPN (res2 {cfg.MODEL.RESNETS.RES2_OUT_CHANNELS} channels), "
                f"{cfg.INPUT.MIN_SIZE_TEST}-{cfg.INPUT.MAX_SIZE_TEST} px")
    result = {"benchmark": "detect", "photos": len(items), "batch_size": int(cfg.DETRET.DETECT.BATCH_SIZE),
              "workers": int(cfg.DETRET.DETECT.NUM_WORKERS), "detector": detector,
              "baseline_default_predictor_s": t_base}
    for precision, ours in crops.items():
        ious = matched_pairwise_iou(Boxes(torch.tensor([ref[pid] for pid, _ in items])),
                                    Boxes(torch.tensor([ours[pid] for pid, _ in items]))).tolist()
        t_ours = t[precision]
        result.update({f"detret_{precision}_s": t_ours, f"speedup_{precision}": t_base / t_ours,
                       f"photos_per_s_{precision}": len(items) / t_ours,
                       f"share_crops_iou_ge_0.95_{precision}": float(np.mean([v >= 0.95 for v in ious])),
                       f"min_crop_iou_{precision}": float(min(ious))})
    return result


def bench_embed_map(args) -> Dict:
    """The demo's mAP with bf16 descriptors against fp32 ones: embeds one of a run's trained
    models again with ``precision="bf16"`` (the same crops), evaluates both, and removes
    the extra descriptors and evaluation afterwards (they would otherwise join the run's table)."""
    import shutil

    from detret.config.pipeline import load_pipeline_config
    from detret.embed.artifact import read_descriptors
    from detret.embed.stage import run_embed
    from detret.evaluate.stage import run_eval
    from detret.runs.layout import RunLayout

    if not args.config:
        raise SystemExit("embed-map: pass --config of a demo run, e.g. runs/demo/demo.yaml")
    pcfg = load_pipeline_config(args.config, ["device=cpu"])
    run_dir = Path(pcfg.run_dir)
    layout = RunLayout(run_dir)
    model = args.model
    if not (layout.embed(model)).is_dir():
        raise SystemExit(f"embed-map: {run_dir} has no descriptors 'embed-{model}' (run `detret demo` first)")
    gallery_crops = json.loads((layout.embed(model) / "summary.json").read_text()).get("gallery_crops",
                                                                                                "detected")
    name, eval_name = f"bench-bf16-{model}", "bench-eval-bf16"
    try:
        t0 = time.perf_counter()
        run_embed(pcfg, models=[model], gallery_crops=gallery_crops, name=name, precision="bf16", force=True)
        t_bf16 = time.perf_counter() - t0
        results = run_eval(pcfg, [model, name], out_name=eval_name, force=True)
        cosines = []
        for side in ("gallery", "queries"):
            a, _ = read_descriptors(layout.embed(model), side)
            b, _ = read_descriptors(layout.embed(name), side)
            cosines.append(float((a * b).sum(1).min()))
    finally:
        for folder in (layout.embed(name), run_dir / eval_name):
            shutil.rmtree(folder, ignore_errors=True)
    means = {k: results[k]["mean_over_categories"] for k in (model, name)}
    per_cat = results[model]["per_category"]
    scored = {c: v.get("queries_scored", v["queries"]) for c, v in per_cat.items()}
    return {"benchmark": "embed-map", "run": str(run_dir), "model": model, "gallery_crops": gallery_crops,
            "bf16_embed_s": t_bf16, "fp32": means[model], "bf16": means[name],
            "map_change_points": 100 * abs(means[name]["mAP"] - means[model]["mAP"]),
            "queries": sum(scored.values()),
            # the mean over categories moves by this many points when one query's AP moves by 1
            "one_query_weight_points": 100 * max(1 / (len(scored) * n) for n in scored.values() if n),
            "min_cosine_bf16_vs_fp32": min(cosines)}


# What each target of issue #8 asks, how it is read off the results, and, when it is not
# met, what stands in the way (measured on this project's 2-core Xeon; see README "Benchmarks").
WHY_NOT = {
    "search": "FAISS's exact CPU search and the NumPy reference spend most of their time in the same fp32 "
              "sgemm (FAISS's bundled OpenBLAS now on the CPU's AVX-512 kernels, see detret/search/faiss_lib.py); "
              "FAISS saves NumPy's argpartition (a heap instead) and its blocked products stay in cache, but "
              "NumPy's matmul alone is 40-75% of NumPy's time, so 3x would need products 2x faster than NumPy's "
              "sgemm. Faster exact search on this CPU needs a bf16 (AMX) product with "
              "exact fp32 re-scoring: tried, but on isotropic synthetic descriptors the rigorous bf16 error "
              "window kept ~950 candidates per query at D = 2048 and it was slower. On GPUs faiss-gpu's flat "
              "index is used (no GPU here to measure it).",
    "detect": "In fp32 the network is ~90% of the time for both; batching and decoding in workers save the "
              "rest. bf16 (DETRET.DETECT.PRECISION bf16) brings the speed but changes the crop of photos whose "
              "detections' scores or objectness lie within bf16 precision of each other or of the threshold "
              "(frequent with the demo's small, briefly trained detector).",
    "embed": "The ratio comes from bf16 autocast on AMX (batching and channels-last alone give about 1.0-1.2x). "
             "On this shared 2-core VM the same code and sizes measured 2.4-4.3x across runs (3.5-4.3x in most): "
             "its bf16 throughput varies between runs more than its fp32 throughput.",
    "embed-map": "bf16 descriptors differ from fp32 ones in the 3rd-4th digit; on a small gallery that can swap "
                 "near-tied neighbours.",
    "eval": "",
}


def _sub(**kwargs) -> argparse.Namespace:
    return argparse.Namespace(**kwargs)


def _run_demo(out: Path, quick: bool) -> Path:
    import subprocess

    cmd = [sys.executable, "-m", "detret", "demo", "--out", str(out)] + (["--quick"] if quick else [])
    print(f"== {' '.join(cmd)}", file=sys.stderr)
    subprocess.run(cmd, check=True)
    return out / "demo.yaml"


def _targets(r: Dict) -> List[Dict]:
    """One row per target: what was measured, the threshold, met or not, and why not."""
    rows = []

    def row(target, what, measured, threshold, met, note=""):
        rows.append({"target": target, "what": what, "measured": measured, "threshold": threshold,
                     "met": bool(met), "why_not": "" if met else (note or WHY_NOT.get(target, ""))})

    e = r["embed"]
    row("embed", "detret embed (batched, channels-last, bf16) vs per-image eager fp32 loop",
        f"{e['speedup_bf16']:.2f}x ({e['batched_bf16_s']:.2f} s vs {e['baseline_per_image_fp32_s']:.2f} s); "
        f"fp32 batched {e['speedup_fp32']:.2f}x", ">= 4x", e["speedup_bf16"] >= 4)
    row("embed-cosine", "lowest cosine similarity, bf16 vs fp32 descriptors (same model and crops)",
        f"{e['min_cosine_bf16']:.6f}", ">= 0.999", e["min_cosine_bf16"] >= 0.999)
    if "embed_map" in r:
        m = r["embed_map"]
        row("embed-map", f"demo mAP ({m['model']}, {m['queries']} queries), bf16 vs fp32 descriptors",
            f"{100 * m['bf16']['mAP']:.2f} vs {100 * m['fp32']['mAP']:.2f}: {m['map_change_points']:.2f} point",
            "< 0.5 point", m["map_change_points"] < 0.5,
            WHY_NOT["embed-map"] + f" Here one query's AP moving by 1 moves the mean by up to "
            f"{m['one_query_weight_points']:.1f} points" + (": this demo is too small to resolve 0.5 point; "
            "measure on the full demo (`all --config runs/demo/demo.yaml`)." if m["one_query_weight_points"] > 0.5
            else "."))
    d = r["detect"]
    best = max(("fp32", "bf16"), key=lambda p: (d[f"share_crops_iou_ge_0.95_{p}"] >= 0.99, d[f"speedup_{p}"]))
    row("detect", f"detret detect vs DefaultPredictor photo by photo ({d['photos']} photos, {d['detector']})",
        "; ".join(f"{p}: {d[f'speedup_{p}']:.2f}x, crops IoU>=0.95 on {100 * d[f'share_crops_iou_ge_0.95_{p}']:.1f}%"
                  for p in ("fp32", "bf16")),
        ">= 2x with IoU >= 0.95 on >= 99% of photos",
        d[f"speedup_{best}"] >= 2 and d[f"share_crops_iou_ge_0.95_{best}"] >= 0.99)
    for s in r["search"]:
        same = "" if s["identical_top20"] else " up to fp32 ties" if s["identical_up_to_float_ties"] else " NO"
        row("search", f"per-category FAISS exact vs NumPy brute force (D = {s['dim']}, {s['gallery']} gallery, "
            f"{s['queries']} queries)", f"{s['speedup']:.2f}x ({s['faiss_s']:.3f} s vs {s['numpy_bruteforce_s']:.3f} s)"
            f"; top-20 identical{same}; NumPy's matmul alone: {s['numpy_matmul_only_s']:.3f} s "
            f"({100 * s['numpy_matmul_share']:.0f}% of its time)",
            ">= 3x, identical top-20", s["speedup"] >= 3 and s["identical_up_to_float_ties"])
    f = r["search_full"]
    row("search-full", f"exact search at {f['scale']:g} x Exact Street2Shop ({f['gallery']} x {f['dim']} gallery, "
        f"{f['queries']} queries)", f"completes: {f['exact_search_s']:.1f} s, peak RSS {f['peak_rss_gib']:.2f} GiB; "
        f"{f['compressed']}: recall@20 {f['recall_at_20']:.3f}, {f['memory_ratio']:.1f}x less memory, "
        f"{f['compressed_search_s']:.1f} s", "completes; compressed index reports recall@20 and memory",
        True)
    v = r["eval"]
    row("eval", f"exact full-gallery mAP, {v['queries']} queries x {v['gallery']} gallery vs sort reference",
        f"{v['speedup']:.1f}x ({v['fast_s']:.2f} s vs {v['sort_reference_s']:.2f} s), values agree: "
        f"{v['values_agree']}", ">= 5x", v["speedup"] >= 5 and v["values_agree"])
    t = r["end_to_end"]
    row("end-to-end", f"time per stage of `detret demo{' --quick' if t['profile'] == 'quick' else ''}`",
        f"{t['total_s']:.0f} s in all; " + ", ".join(f"{k} {v:.0f} s" for k, v in t["per_step_s"].items()),
        "reported", True)
    return rows


def _markdown(rows: List[Dict], r: Dict) -> str:
    lines = [f"# detret benchmarks ({r['mode']})", "", f"Command: `{r['command']}`  ", f"Machine: {json.dumps(r['machine'])}",
             "", "| target | what | measured | threshold | met |", "|---|---|---|---|---|"]
    for x in rows:
        lines.append(f"| {x['target']} | {x['what']} | {x['measured']} | {x['threshold']} | "
                     f"{'yes' if x['met'] else '**no**'} |")
    unmet = [x for x in rows if not x["met"]]
    if unmet:
        lines += ["", "## Not met, and why", ""]
        said = set()
        for x in unmet:
            if (x["target"], x["why_not"]) not in said:  # one explanation per target
                said.add((x["target"], x["why_not"]))
                lines.append(f"- **{x['target']}**: {x['why_not']}")
    return "\n".join(lines) + "\n"


def bench_all(args) -> Dict:
    """Every target of the performance issue in one run; writes report.json and report.md
    to ``--out-dir``. ``--quick``: `detret demo --quick` and smaller sizes (a few minutes);
    without it, the full demo (about 15 min) and the sizes of the README's figures.
    ``--config`` reuses a finished demo run instead of running the demo."""
    quick = args.quick
    work = Path(args.work or ("runs/bench-quick" if quick else "runs/bench"))
    if args.config:
        config = Path(args.config)
    else:
        config = _run_demo(work, quick)
    timings_path = Path(config).parent / "demo" / "timings.json"
    if not timings_path.is_file():
        raise SystemExit(f"all: {timings_path} is missing: --config must be the demo.yaml of a finished "
                         f"`detret demo` (or leave --config out to run the demo)")
    timings = json.loads(timings_path.read_text())
    r: Dict = {"mode": "quick" if quick else "full", "command": " ".join(["python tools/benchmark.py"] + sys.argv[1:])}
    steps = {s["step"]: s.get("seconds_when_run", s["seconds"]) for s in timings["steps"]}
    r["end_to_end"] = {"profile": timings["profile"], "per_step_s": steps, "total_s": sum(steps.values()),
                       "timings": str(Path(config).parent / "demo" / "timings.json")}

    def step(name, fn, ns):
        print(f"== {name}", file=sys.stderr)
        t0 = time.perf_counter()
        out = fn(ns)
        print(f"   {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        return out

    r["embed"] = step("embed", bench_embed, _sub(arch="resnet50", size=224, images=64, batch=16,
                                                 repeat=2 if quick else 3))
    r["embed_map"] = step("embed-map", bench_embed_map, _sub(config=str(config), model=args.model))
    r["detect"] = step("detect", bench_detect, _sub(config=str(config), photos=60 if quick else 200,
                                                    repeat=1 if quick else 3))
    r["search"] = [step(f"search D={dim}", bench_search, _sub(gallery=40000, queries=2000, dim=dim,
                                                              repeat=2 if quick else 3)) for dim in (512, 2048)]
    r["eval"] = step("eval", bench_eval, _sub(gallery=20000, queries=5000 if quick else 20000, repeat=1))
    r["search_full"] = step("search-full", bench_search_full, _sub(scale=0.05 if quick else args.scale, dim=2048,
                                                                   compressed=args.compressed))
    r["machine"] = machine()
    rows = _targets(r)
    r["targets"] = rows
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "report_quick" if quick else "report"
    (out_dir / f"{stem}.json").write_text(json.dumps(r, indent=2) + "\n")
    (out_dir / f"{stem}.md").write_text(_markdown(rows, r))
    print(_markdown(rows, r))
    return {"benchmark": "all", "report": str(out_dir / f"{stem}.md"),
            "met": [x["target"] for x in rows if x["met"]], "not_met": [x["target"] for x in rows if not x["met"]]}


def _service(which: str):
    """The catalogue/service and re-ranking benchmarks, kept in their own modules beside this one."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_hostile
    import bench_rerank
    import bench_service

    return {"serve": bench_service.bench_serve, "catalogue-add": bench_service.bench_catalogue_add,
            "rerank": bench_rerank.bench_rerank, "serve-hostile": bench_hostile.bench_serve_hostile}[which]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", choices=["all", "search", "search-full", "eval", "bootstrap", "rerank", "embed",
                                          "embed-map", "detect", "serve", "catalogue-add",
                                          "serve-hostile"])
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap: resamples per interval")
    parser.add_argument("--quick", action="store_true", help="all: the quick demo and smaller sizes (minutes)")
    parser.add_argument("--work", default=None, help="all: where the demo runs (default runs/bench-quick, runs/bench)")
    parser.add_argument("--out-dir", default="benchmarks", help="all: where report[_quick].json/.md go")
    parser.add_argument("--model", default="tri-crops", help="embed-map: the demo model embedded again in bf16")
    parser.add_argument("--scale", type=float, default=1.0, help="search-full (and all without --quick): share of "
                                                                 "the real counts")
    parser.add_argument("--compressed", default="SQ8", help="search-full: compressed FAISS index")
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
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_service

    bench_service.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.gallery is None:
        args.gallery = 40000 if args.which == "search" else 20000
    if args.which == "search-full" and args.dim == 512 and "--dim" not in (argv or sys.argv):
        args.dim = 2048
    if args.which == "rerank" and "--dim" not in (argv or sys.argv):
        args.dim = 128
    if args.which in ("serve", "catalogue-add", "serve-hostile") and not args.config:
        raise SystemExit(f"{args.which}: --config must name the demo.yaml of a finished `detret demo`")
    runners = {"all": bench_all, "search": bench_search, "search-full": bench_search_full, "eval": bench_eval,
               "bootstrap": bench_bootstrap, "rerank": _service("rerank"),
               "embed": bench_embed, "embed-map": bench_embed_map, "detect": bench_detect,
               "serve": _service("serve"), "catalogue-add": _service("catalogue-add"),
               "serve-hostile": _service("serve-hostile")}
    result = runners[args.which](args)
    result["machine"] = machine()
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
