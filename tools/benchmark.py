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
    python tools/benchmark.py demo --config runs/demo/demo.yaml --out benchmarks/demo.json
    python tools/benchmark.py catalogue-scale [--photos 10000 100000 1000000 --dim 2048 --index Flat auto]
    python tools/benchmark.py day-one --config runs/demo/demo.yaml [--new 40 --images 64 --photos 40 --products 25]
    python tools/benchmark.py engine --config runs/demo/demo.yaml [--photos 100 --images 64 --requests 40]

- search: detret's per-category FAISS search (exact inner product) against a NumPy
  brute force (matmul + argpartition + sort) on the same descriptors, split by the
  real Exact Street2Shop category proportions; checks that the top-20 are identical.
- eval: full-gallery mAP by counting, per positive, the items ranked before it
  (detret.retrieval.metrics.full_gallery_ap) against the sort-based definition
  (sort the whole gallery, then eq. 4); checks that the values agree.
- bootstrap: eval's 95% intervals (1,000 resamples within each category) at Exact Street2Shop's
  scale (20,357 queries, 8 runs) against computing the metrics without them; the seconds added.
- rerank: aqe, dba and diffusion (tools/benchs/rerank.py) at Exact Street2Shop scale against plain
  exact scoring in the same run: seconds and peak memory per method, and the dense [M, M] matrix
  the largest category would need (never built).
- embed: batched channels-last bf16-autocast embedding against a per-image eager fp32
  loop with the same model and crops; reports the lowest cosine similarity between them.
- detect: `detret detect`'s batched detection (fp32, and bf16 bottom-up) against Detectron2's
  DefaultPredictor photo by photo, same photos and weights; reports the share of photos whose
  crops agree (IoU >= 0.95).
- embed-map: a demo model's mean mAP with bf16 descriptors against its fp32 ones.
- serve, catalogue-add: the catalogue and the service (tools/benchs/service.py): HTTP search against
  `detret query`, latency percentiles and throughput with 1 and 8 clients, memory against catalogue
  size; the cost of adding 50 photos to catalogues of 1,000 and 20,000 photos.
- serve-hostile (tools/benchs/hostile.py): 8 normal clients searching with detection, without and then
  with one hostile client (thin, EPS, DDS and 40 MP photos, unauthenticated 64 MiB bodies, slow bodies
  and headers, invented methods): the normal clients' errors and p95 ratio, the hostile requests'
  answers, the server's peak memory above its memory after warm-up.
- demo: the figures of a finished `detret demo` (``--config``; and of `demo --recipe seeds` when it ran)
  in one file, for the documentation: Table 1 with intervals, the reading, the seed systems, the
  detector, the time per step.
- catalogue-scale (tools/benchs/catalogue_scale.py): the catalogue's vector store at 10^4-10^6 photos through
  its own write and search paths: adding and removing 50 photos, a server's refresh, search latency, recall@20
  against exact search, memory; extrapolated to 10 M.
- serve-workers (tools/benchs/service.py): `detret serve --workers 1` against `--workers 2` on the same
  catalogue, searches with detection from 8 clients: throughput, latency, the server's CPU seconds per request
  and the throughput they predict for more cores.
- day-one (tools/benchs/day_one.py): the duplicate check at `catalogue add` (keep against off, 20,000 photos),
  how copies and distinct photos separate by pHash and by the aligned difference, a foundation encoder
  (ViT-B-16-SigLIP) against ResNet-50 GeM photos per second, detection recording masks against boxes only.
- engine (tools/benchs/engine.py): the onnxruntime engine against torch on the demo's models: detection against
  Detectron2's DefaultPredictor (fp32 and int8, crops kept, where onnxruntime spends its time), `detret serve`
  with and without `--engine onnxruntime` (1 and 8 clients), descriptors batched on each engine against the
  per-image fp32 loop (the demo's network and a ResNet-50 GeM at d = 2048).
- all: runs the demo (or reuses ``--config``), then all of the above, and writes
  ``benchmarks/report[_quick].md`` and ``.json``: each target, met or not, and why not.

Each prints and writes JSON (``--out``) with absolute times, the ratio and the
machine description. The machine is noisy: every timing is the best of `--repeat`
rounds, and within a round the baseline and detret's code run in turn.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the benchs/ package beside this file

# name -> (module of benchs/, function): imported when chosen, so each benchmark loads only what it needs.
BENCHMARKS = {
    "all": ("all", "bench_all"), "search": ("search", "bench_search"),
    "search-full": ("search_full", "bench_search_full"), "eval": ("eval", "bench_eval"),
    "bootstrap": ("bootstrap", "bench_bootstrap"), "rerank": ("rerank", "bench_rerank"),
    "embed": ("embed", "bench_embed"), "embed-map": ("embed_map", "bench_embed_map"),
    "detect": ("detect", "bench_detect"), "serve": ("service", "bench_serve"),
    "catalogue-add": ("service", "bench_catalogue_add"), "serve-hostile": ("hostile", "bench_serve_hostile"),
    "demo": ("demo_record", "bench_demo"), "catalogue-scale": ("catalogue_scale", "bench_catalogue_scale"),
    "serve-workers": ("service", "bench_serve_workers"), "day-one": ("day_one", "bench_day_one"),
    "engine": ("engine", "bench_engine"),
}
NEEDS_DEMO = ("serve", "catalogue-add", "serve-hostile", "demo", "serve-workers", "day-one", "engine")


def benchmark(name: str):
    """The function of benchmark `name`."""
    module, function = BENCHMARKS[name]
    return getattr(importlib.import_module(f"benchs.{module}"), function)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("which", choices=list(BENCHMARKS))
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap: resamples per interval")
    p.add_argument("--quick", action="store_true", help="all: the quick demo and smaller sizes (minutes)")
    p.add_argument("--work", default=None, help="all: where the demo runs (default runs/bench-quick, runs/bench)")
    p.add_argument("--out-dir", default="benchmarks", help="all: where report[_quick].json/.md go")
    p.add_argument("--model", default="tri-crops", help="embed-map: the demo model embedded again in bf16")
    p.add_argument("--scale", type=float, default=1.0, help="search-full (and all without --quick): share of "
                                                            "the real counts")
    p.add_argument("--compressed", default="SQ8", help="search-full: compressed FAISS index")
    p.add_argument("--config", default=None, help="detect: pipeline config of a run with a trained detector")
    p.add_argument("--photos", type=int, nargs="+", default=None, help="detect: shop photos (200); "
                                                                       "catalogue-scale: catalogue sizes (10000 100000)")
    p.add_argument("--index", nargs="+", default=["Flat", "auto"], help="catalogue-scale: index settings")
    p.add_argument("--vectors", nargs="+", default=["faiss"], choices=["faiss", "milvus"],
                   help="catalogue-scale: vector stores (milvus: Milvus Lite embedded)")
    p.add_argument("--products", type=int, default=25, help="day-one: demo products whose photos measure how "
                                                            "copies and distinct photos separate")
    p.add_argument("--arch", default="resnet50", help="embed: backbone")
    p.add_argument("--size", type=int, default=224, help="embed: image size (square)")
    p.add_argument("--images", type=int, default=64, help="embed: crops")
    p.add_argument("--batch", type=int, default=16, help="embed: batch size")
    p.add_argument("--gallery", type=int, default=None)
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--out", default=None, help="write the result JSON here")
    importlib.import_module("benchs.service").add_arguments(p)
    importlib.import_module("benchs.engine").add_arguments(p)
    return p


def _defaults(args: argparse.Namespace, argv) -> None:
    """Sizes that depend on the benchmark chosen."""
    given = argv if argv is not None else sys.argv
    if args.which == "catalogue-scale":
        args.photos = args.photos or [10_000, 100_000]
        args.dim = args.dim if "--dim" in given else 2048
        args.repeat = args.repeat if "--repeat" in given else 5
    else:
        args.photos = (args.photos or [200])[0]
    if args.gallery is None:
        args.gallery = 40000 if args.which == "search" else 20000
    if args.which == "search-full" and "--dim" not in given:
        args.dim = 2048
    if args.which == "rerank" and "--dim" not in given:
        args.dim = 128
    if args.which in NEEDS_DEMO and not args.config:
        raise SystemExit(f"{args.which}: --config must name the demo.yaml of a finished `detret demo`")


def main(argv=None) -> int:
    from benchs.common import machine

    args = parser().parse_args(argv)
    _defaults(args, argv)
    result = benchmark(args.which)(args)
    result["machine"] = machine()
    result["date"] = time.strftime("%Y-%m-%d")
    result.setdefault("command", " ".join(["python tools/benchmark.py", *(argv if argv is not None else sys.argv[1:])]))
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
