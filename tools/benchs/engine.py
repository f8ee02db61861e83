"""engine: the onnxruntime engine against torch, on the demo's models and photos, in one run.

- detection: Detectron2's DefaultPredictor photo by photo (the baseline), `detret detect`'s torch engine, and the
  onnxruntime engine fp32 and int8, over the same shop photos (decoding included); each engine's share of photos
  whose crop (the paper's rule) has IoU >= 0.95 with the baseline's, and where onnxruntime spends its time;
- serving: `detret serve` on a catalogue of the demo run, torch against `--engine onnxruntime`: searches with
  detection (category given), 1 client then 8 (p50, throughput);
- descriptors: the per-image fp32 torch loop (the baseline) against batches on torch and on onnxruntime fp32 and
  int8, for the demo's network and for a ResNet-50 GeM at d = 2048, 224 px (the paper's size, random weights:
  speed only); the demo network's cosines to its fp32 descriptors.
"""
from __future__ import annotations

import collections
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

from .common import best_of


def _cpu() -> Dict:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    model = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")), "?")
    flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), [])
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8")
    return {"model": model, "flags": [f for f in wanted if f in flags]}


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return ix * iy / union if union > 0 else 1.0


def _op_shares(graph: Path, inputs: List[np.ndarray]) -> Dict[str, float]:
    """Share of onnxruntime's node time per operator type over ``inputs`` (its own profiler)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(tempfile.mkdtemp(prefix="detret-ort-profile-")) / "profile")
    session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"],
                                   disabled_optimizers=["ReshapeFusion"])
    for image in inputs:
        session.run(None, {"image": image})
    trace = Path(session.end_profiling())
    events = json.loads(trace.read_text())
    shutil.rmtree(trace.parent, ignore_errors=True)
    per_op: collections.Counter = collections.Counter()
    for e in events:
        if e.get("cat") == "Node":
            per_op[e["args"].get("op_name")] += e["dur"]
    total = sum(per_op.values()) or 1
    return {op: round(100.0 * t / total, 1) for op, t in per_op.most_common(8)}


def _detection(args, pcfg, work: Path) -> Dict:
    import cv2
    import torch
    from detectron2.engine import DefaultPredictor

    from detret.data.categories import load_categories
    from detret.data.street2shop import load_street2shop
    from detret.detect.config import choose_detector
    from detret.detect.crops import select_crop
    from detret.detect.engine import engine_folder, open_detector, photos_reader, read_engine
    from detret.detect.inference import detect_photos, inference_cfg, load_detector, to_detections
    from detret.detect.portable import graph_input
    from detret.detect.stage import gallery_paths

    cats = load_categories(pcfg.data.category_map)
    data = load_street2shop(Path(pcfg.data.street2shop.root), splits=())
    category = {s.photo_id: c for c in data.categories for s in data.gallery[c]}
    ids = sorted(category)[::max(1, len(category) // args.photos)][:args.photos]
    items = [(p, data.photo_path(p)) for p in ids]
    choice = choose_detector(pcfg, torch.device("cpu"), [])
    base = inference_cfg(choice.cfg)
    base.defrost()
    base.MODEL.WEIGHTS, base.MODEL.DEVICE = choice.weights, "cpu"
    base.freeze()

    def crop(pid, dets, size):
        return select_crop(dets, category[pid], cats.street2shop_to_modanet, size).box_xyxy

    predictor = DefaultPredictor(base)

    def baseline():
        out = {}
        for pid, path in items:
            bgr = cv2.imread(str(path))
            out[pid] = crop(pid, to_detections(predictor(bgr)["instances"].to("cpu"), cats.modanet),
                            (bgr.shape[1], bgr.shape[0]))
        return out

    def engine(name, precision):
        cfg = base.clone()
        cfg.defrost()
        cfg.DETRET.DETECT.ENGINE, cfg.DETRET.DETECT.PRECISION = name, precision
        cfg.freeze()
        model = load_detector(cfg, choice.weights, "cpu") if name == "torch" else \
            open_detector(cfg, choice.weights, "cpu", photos_reader(gallery_paths(data)), "the demo's shop photos",
                          under=work / "engines")

        def run():
            found = []
            for _ in detect_photos(model, cfg, items, cats.modanet, torch.device("cpu"), found.extend):
                pass
            return {r.photo_id: crop(r.photo_id, r.detections, (r.width, r.height)) for r in found}
        return run, cfg

    runs = {"torch_fp32": engine("torch", "fp32"), "onnxruntime_fp32": engine("onnxruntime", "fp32"),
            "onnxruntime_int8": engine("onnxruntime", "int8")}
    ref = baseline()
    crops = {name: run() for name, (run, _) in runs.items()}
    times = best_of({"default_predictor": baseline, **{n: r for n, (r, _) in runs.items()}}, args.repeat)
    out = {"photos": len(items), "detector": f"{base.MODEL.RESNETS.DEPTH}-layer ResNet FPN "
                                             f"({base.INPUT.MIN_SIZE_TEST}-{base.INPUT.MAX_SIZE_TEST} px), "
                                             f"masks {'on' if base.MODEL.MASK_ON else 'off'}",
           "default_predictor_s": times["default_predictor"], "engines": {}}
    for name in runs:
        ious = [_iou(ref[p], crops[name][p]) for p in ids]
        out["engines"][name] = {"s": times[name], "speedup_vs_default_predictor": times["default_predictor"] / times[name],
                                "crops_same_share": float(np.mean([v >= 0.95 for v in ious])),
                                "min_crop_iou": float(min(ious))}
    folder = engine_folder(runs["onnxruntime_fp32"][1], choice.weights, work / "engines")
    spec = read_engine(folder)
    sample = [graph_input(photos_reader([p for _, p in items])(1)[0], base.INPUT.MIN_SIZE_TEST,
                          base.INPUT.MAX_SIZE_TEST, base.INPUT.FORMAT)] * 10
    out["onnxruntime_op_time_share_percent"] = {p: _op_shares(folder / spec["files"][p], sample)
                                                for p in ("fp32", "int8")}
    return out


def _serving(args, work: Path) -> Dict:
    from .service import Server, _load, distinct_street_photos, make_catalogue

    cat = make_catalogue(args.config, args.model, work / "cat")
    engine = ["--engine", "onnxruntime", "--precision", args.descriptor_precision, "--detector-precision",
              args.detector_precision]
    subprocess.run([sys.executable, "-m", "detret", "catalogue", "engine", str(cat), *engine[2:]], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)   # exported before the timings
    category, data, photos = distinct_street_photos(args.config, args.model, 3 * args.requests + 2)
    fields = {"category": category, "k": "20"}
    out = {"distinct_photos": len(set(data)), "street_photos": photos, "requests_per_load": args.requests}
    for name, options in (("torch", []), ("onnxruntime", engine)):
        with Server(cat, options) as server:
            _load(server.url, data[-2:], fields, 2, 1)
            one = _load(server.url, data[:args.requests], fields, 1, args.requests)
            eight = _load(server.url, data[args.requests:], fields, 8, max(1, args.requests // 4))
        out[name] = {"1_client": one, "8_clients": eight}
    out["throughput_8_clients_onnxruntime_over_torch"] = \
        out["onnxruntime"]["8_clients"]["throughput_rps"] / out["torch"]["8_clients"]["throughput_rps"]
    return out


def _descriptors(args, pcfg, work: Path) -> Dict:
    from detret.data.street2shop import load_street2shop
    from detret.detect.engine import photos_reader
    from detret.detect.stage import gallery_paths
    from detret.embed.inference import embed_crops
    from detret.retrieval.descriptor_model import load_descriptor_model
    from detret.retrieval.model import build_retrieval_net, save_checkpoint
    from detret.runs.layout import RunLayout

    data = load_street2shop(Path(pcfg.data.street2shop.root), splits=())
    photos = photos_reader(gallery_paths(data))(64 + args.images)
    calibration, crops = photos[:64], photos[64:]
    big = work / "resnet50-gem-2048.pt"
    save_checkpoint(big, build_retrieval_net("resnet50", dim=2048, pretrained=False, pooling="gem", image_size=224))
    out = {}
    for name, checkpoint in ((args.model, RunLayout(pcfg.run_dir).retrieval_checkpoint(args.model)),
                             ("resnet50-gem-2048 (224 px, random weights)", big)):
        torch_model = load_descriptor_model(checkpoint)
        onnx = {p: load_descriptor_model(checkpoint, "cpu", "onnxruntime", p, lambda: calibration, "demo photos",
                                         work / "descriptor-engines") for p in ("fp32", "int8")}
        fns = {"torch_fp32_per_image": lambda: [embed_crops(torch_model, [c], [1.0], "cpu") for c in crops],
               "torch_fp32_batched": lambda: embed_crops(torch_model, crops, [1.0], "cpu"),
               **{f"onnxruntime_{p}_batched": (lambda m=m: embed_crops(m, crops, [1.0], "cpu"))
                  for p, m in onnx.items()}}
        times = best_of(fns, args.repeat)
        want = embed_crops(torch_model, crops, [1.0], "cpu")
        row = {"crops": len(crops), "photos_per_s": {k: len(crops) / t for k, t in times.items()},
               "speedup_vs_fp32_loop": {k: times["torch_fp32_per_image"] / t for k, t in times.items()}}
        if checkpoint != big:
            row["cosine_to_torch_fp32"] = {
                p: {"min": float((want * embed_crops(m, crops, [1.0], "cpu")).sum(1).min()),
                    "mean": float((want * embed_crops(m, crops, [1.0], "cpu")).sum(1).mean())} for p, m in onnx.items()}
        out[name] = row
    return out


def bench_engine(args) -> Dict:
    from detret.config.pipeline import load_pipeline_config

    if not args.config:
        raise SystemExit("engine: pass --config of a finished demo (runs/demo/demo.yaml)")
    pcfg = load_pipeline_config(args.config, ["device=cpu"])
    work = Path(tempfile.mkdtemp(prefix="detret-bench-engine-"))
    try:
        t0 = time.perf_counter()
        detection = _detection(args, pcfg, work)
        descriptors = _descriptors(args, pcfg, work)
        serving = _serving(args, work)
        ort_det = detection["engines"][f"onnxruntime_{args.detector_precision}"]
        demo = descriptors[args.model]
        return {"benchmark": "engine", "engine": "onnxruntime",
                "precision": {"detector": args.detector_precision, "descriptors": args.descriptor_precision},
                "cpu": _cpu(),
                "detect_speedup_vs_default_predictor": ort_det["speedup_vs_default_predictor"],
                "crops_same_share": ort_det["crops_same_share"],
                "serve_detection_p50_ms": serving["onnxruntime"]["1_client"]["p50"],
                "serve_throughput_8_clients_vs_torch": serving["throughput_8_clients_onnxruntime_over_torch"],
                "embed_speedup_vs_fp32_loop":
                    demo["speedup_vs_fp32_loop"][f"onnxruntime_{args.descriptor_precision}_batched"],
                "detection": detection, "serving": serving, "descriptors": descriptors,
                "wall_s": time.perf_counter() - t0}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def add_arguments(parser) -> None:
    parser.add_argument("--detector-precision", default="fp32", choices=["fp32", "int8"],
                        help="engine: the onnxruntime detector's precision in the headline figures and the service")
    parser.add_argument("--descriptor-precision", default="int8", choices=["fp32", "int8"],
                        help="engine: the onnxruntime descriptors' precision in the headline figures and the service")
