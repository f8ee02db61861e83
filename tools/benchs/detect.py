"""detect: `detret detect`'s batched detection (fp32, and bf16 bottom-up) against Detectron2's
DefaultPredictor photo by photo, same photos and weights; the share of photos whose crops agree."""
from __future__ import annotations

from typing import Dict

import numpy as np

from .common import best_of


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
        result.update(_agreement(precision, [ref[pid] for pid, _ in items], [ours[pid] for pid, _ in items],
                                 t_base, t[precision]))
    return result


def _agreement(precision: str, ref_boxes, our_boxes, t_base: float, t_ours: float) -> Dict:
    """Speed and crop agreement (IoU of each photo's two crops) of one precision against the baseline."""
    import torch
    from detectron2.structures import Boxes
    from detectron2.structures.boxes import matched_pairwise_iou

    ious = matched_pairwise_iou(Boxes(torch.tensor(ref_boxes)), Boxes(torch.tensor(our_boxes))).tolist()
    return {f"detret_{precision}_s": t_ours, f"speedup_{precision}": t_base / t_ours,
            f"photos_per_s_{precision}": len(ref_boxes) / t_ours,
            f"share_crops_iou_ge_0.95_{precision}": float(np.mean([v >= 0.95 for v in ious])),
            f"min_crop_iou_{precision}": float(min(ious))}
