"""`day-one`: what the day-one features cost on this CPU, each against its baseline in the same run.

- duplicates: `catalogue add` of N photos to a catalogue of 20,000 (the demo's gallery, grown with synthetic
  rows) with the duplicate check (``--duplicates keep``) against without it (``off``): half the photos are
  re-encoded copies of stored shop photos (each must be found), half street photos that are not in the
  catalogue (none may be called a duplicate); seconds per new photo and the ratio.
- foundation: photos per second of a foundation image encoder (open_clip's ViT-B-16-SigLIP architecture,
  Marqo-FashionSigLIP's, with random weights: speed does not depend on the weights, and nothing is
  downloaded) against the paper's ResNet-50 GeM network at 224 px, on the same crops, fp32, batches of 16.
- separation: why near-duplicates are verified by aligned pixels and not a perceptual hash: on the demo's
  products with several shop photos, the largest distance of a copy (JPEG q40, half size, 6% and 9% crops,
  8% off one side, crop + resize + re-encode) from its photo and the smallest distance between two distinct
  photos of one product, by imagehash's pHash (bits of 64) and by detret's aligned difference (0..255): a
  threshold separates the two only where the first is below the second.
- masks: the demo detector's photos per second recording masks (``DETRET.DETECT.MASKS True``) against boxes
  only, on the same photos (a detector with a mask head: the full demo's).
"""
from __future__ import annotations

import io
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Dict

import numpy as np

from .common import best_of
from .service import _pcfg, grow, make_catalogue


def _photo_lists(config: str, n: int, folder: Path):
    """(product list of n photos: n/2 re-encoded stored shop photos, n/2 street photos, the copies' lines)."""
    from PIL import Image

    from detret.embed.artifact import read_descriptors

    pcfg = _pcfg(config)
    run = Path(pcfg.run_dir)
    images = Path(pcfg.data.street2shop.root) / "images"
    _, shop = read_descriptors(run / "embed-tri-crops", "gallery")
    _, street = read_descriptors(run / "embed-tri-crops", "queries")
    folder.mkdir(parents=True, exist_ok=True)
    lines, copies = [], set()
    for i, r in enumerate(shop[: n // 2]):
        buf = io.BytesIO()
        Image.open(images / f"{r.photo_id:09d}.jpg").convert("RGB").save(buf, "JPEG", quality=80)
        (folder / f"copy-{i}.jpg").write_bytes(buf.getvalue())
        lines.append(f"copy-{i}.jpg,bench-copy-{i},{r.category}")
        copies.add(len(lines) + 1)
    seen = set()
    for r in street:
        if len(lines) >= n:
            break
        if r.photo_id not in seen:
            seen.add(r.photo_id)
            lines.append(f"{images / f'{r.photo_id:09d}.jpg'},bench-street-{r.photo_id},{r.category}")
    (folder / "new.csv").write_text("photo,product,category\n" + "\n".join(lines) + "\n")
    return folder / "new.csv", copies


def _duplicates(args, work: Path) -> Dict:
    from detret.catalogue.add import add_lines
    from detret.catalogue.binding import BoundModels
    from detret.catalogue.products_csv import read_products_csv
    from detret.catalogue.store import Catalogue

    base = make_catalogue(args.config, args.model, work / "base")
    grow(base, 20_000)
    csv, copies = _photo_lists(args.config, args.new, work / "photos")
    models, found = None, {}

    def add(policy):
        target = work / f"round-{policy}"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(base, target)
        nonlocal models
        with Catalogue.writing(target, "benchmark") as cat:
            models = models or BoundModels(cat.card, target, "cpu")
            report = add_lines(cat, read_products_csv(csv, list(cat.card.category_map)), models,
                               duplicates=policy)
        found[policy] = report

    seconds = best_of({"off": lambda: add("off"), "keep": lambda: add("keep")}, args.repeat)
    flagged = {d["line"] for d in found["keep"].duplicates}
    return {"new_photos": args.new, "catalogue_photos": 20_000, "seconds": seconds,
            "per_new_photo_ms": {k: v / args.new * 1e3 for k, v in seconds.items()},
            "overhead_ratio_keep_over_off": seconds["keep"] / seconds["off"],
            "copies_found": len(flagged & copies), "copies": len(copies),
            "street_photos_called_duplicates": len(flagged - copies)}


def _foundation(args) -> Dict:
    import open_clip
    import torch

    from detret.embed.inference import embed_crops
    from detret.retrieval.foundation.net import FoundationNet
    from detret.retrieval.model import build_retrieval_net

    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-16-SigLIP")   # random weights
    siglip = FoundationNet(model.eval(), lambda image: preprocess(image), model.encode_image,
                           {"library": "open_clip", "name": "ViT-B-16-SigLIP (random weights)", "dim": 768})
    siglip._dim = 768
    resnet = build_retrieval_net("resnet50", 2048, pretrained=False, image_size=224).eval()
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (int(rng.integers(200, 400)), int(rng.integers(150, 300)), 3), dtype=np.uint8)
             for _ in range(args.images)]
    torch.set_num_threads(torch.get_num_threads())
    seconds = best_of({"resnet50_gem_224": lambda: embed_crops(resnet, crops, [1.0], "cpu"),
                       "vit_b16_siglip_224": lambda: embed_crops(siglip, crops, [1.0], "cpu")}, args.repeat)
    return {"crops": args.images, "photos_per_s": {k: args.images / v for k, v in seconds.items()},
            "ratio_siglip_over_resnet50_time": seconds["vit_b16_siglip_224"] / seconds["resnet50_gem_224"]}


def _variants(rgb: np.ndarray) -> Dict[str, np.ndarray]:
    from PIL import Image

    h, w = rgb.shape[:2]
    image = Image.fromarray(rgb)

    def jpeg(a, quality):
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, "JPEG", quality=quality)
        return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))

    return {"jpeg q40": jpeg(rgb, 40), "half size": np.asarray(image.resize((w // 2, h // 2), Image.BILINEAR)),
            "6% crop": rgb[int(h * .06):h - int(h * .06), int(w * .06):w - int(w * .06)],
            "9% crop": rgb[int(h * .09):h - int(h * .09), int(w * .09):w - int(w * .09)],
            "8% off one side": rgb[:, int(w * .08):],
            "crop, resize, re-encode": jpeg(np.asarray(image.crop((13, 6, w - 9, h - 20)).resize(
                (int((w - 22) * .7), int((h - 26) * .7)))), 70)}


def _separation(args) -> Dict:
    import imagehash
    from PIL import Image

    from detret.catalogue.duplicates import MAX_DIFFERENCE, picture_difference
    from detret.data.images import read_rgb

    pcfg = _pcfg(args.config)
    root = Path(pcfg.data.street2shop.root)
    by_product: Dict = {}
    for f in sorted((root / "meta" / "json").glob("retrieval_*.json")):
        for r in json.loads(f.read_text()):
            by_product.setdefault((f.stem, r["product"]), set()).add(int(r["photo"]))
    groups = [sorted(v) for _, v in sorted(by_product.items()) if len(v) >= 2][:args.products]
    phash = {"copies": [], "distinct": []}
    aligned = {"copies": [], "distinct": []}
    for ids in groups:
        photos = [read_rgb(root / "images" / f"{p:09d}.jpg") for p in ids]
        h0 = imagehash.phash(Image.fromarray(photos[0]))
        for variant in _variants(photos[0]).values():
            phash["copies"].append(h0 - imagehash.phash(Image.fromarray(variant)))
            aligned["copies"].append(picture_difference(variant, photos[0]))
        for other in photos[1:]:
            phash["distinct"].append(h0 - imagehash.phash(Image.fromarray(other)))
            d = picture_difference(other, photos[0])
            aligned["distinct"].append(float("inf") if d is None else d)
    return {"products": len(groups), "copies": len(phash["copies"]), "distinct_pairs": len(phash["distinct"]),
            "phash_bits": {"copies_max": int(max(phash["copies"])), "distinct_min": int(min(phash["distinct"]))},
            "aligned_difference": {"copies_max": round(max(aligned["copies"]), 2),
                                   "distinct_min": round(min(aligned["distinct"]), 2), "threshold": MAX_DIFFERENCE}}


def _masks(args) -> Dict:
    import torch

    from detret.data.categories import load_categories
    from detret.detect.config import choose_detector
    from detret.detect.inference import detect_photos, load_detector

    pcfg = _pcfg(args.config)
    images = sorted((Path(pcfg.data.street2shop.root) / "images").glob("*.jpg"))[: args.photos]
    items, labels, device = list(enumerate(images)), load_categories().modanet, torch.device("cpu")
    runs = {}
    for masks in (False, True):
        choice = choose_detector(pcfg, "cpu", ["DETRET.DETECT.MASKS", str(masks), "DETRET.DETECT.NUM_WORKERS", "0"])
        if masks and not choice.cfg.MODEL.MASK_ON:
            return {"skipped": "the demo's detector has no mask head (run the full demo of this version)"}
        model = load_detector(choice.cfg, choice.weights, device)
        runs["masks" if masks else "boxes"] = (model, choice.cfg)
    sink = []

    def run(name):
        model, cfg = runs[name]
        sink.clear()
        for _ in detect_photos(model, cfg, items, labels, device, sink.extend):
            pass

    seconds = best_of({"boxes": lambda: run("boxes"), "masks": lambda: run("masks")}, args.repeat)
    return {"photos": len(items), "photos_per_s": {k: len(items) / v for k, v in seconds.items()},
            "ratio_masks_over_boxes_time": seconds["masks"] / seconds["boxes"]}


def bench_day_one(args) -> Dict:
    work = Path(tempfile.mkdtemp(prefix="detret-bench-day-one-"))
    started = time.time()
    try:
        from detret.doctor.machine import cpu_flags

        return {"benchmark": "day-one", "duplicates": _duplicates(args, work), "separation": _separation(args),
                "foundation": _foundation(args), "masks": _masks(args), "cpu_flags": ", ".join(cpu_flags()) or "none of AVX2, AVX-512, AMX",
                "seconds": round(time.time() - started, 1)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
