"""`detret data synth`: the embedded dataset, written in the published formats.

Layout written under OUT (the same trees the real-data loaders read)::

    OUT/manifest.json                       stage manifest (detret.runs.manifest)
    OUT/detret.yaml                         pipeline config pointing at this data
    OUT/modanet/annotations/modanet2018_instances_train.json   COCO instances, polygons
    OUT/modanet/annotations/modanet2018_instances_val.json     images only, no annotations
                                                                (as the official val file)
    OUT/modanet/images/<image id, 7 digits>.jpg
    OUT/street2shop/meta/json/retrieval_<cat>.json     [{"photo", "product"}]  shop photos
    OUT/street2shop/meta/json/train_pairs_<cat>.json   [{"photo", "product", "bbox": {left, top, width, height}}]
    OUT/street2shop/meta/json/test_pairs_<cat>.json
    OUT/street2shop/meta/attributes.csv                each product's colour, pattern, trim, badge
                                                       (detret.data.attributes; DARN's attribute heads)
    OUT/street2shop/meta/shop_boxes.json               where each shop photo shows its product, whole and
                                                       by piece (detret.data.shop_boxes; synthetic only)
    OUT/street2shop/images/<photo id, 9 digits>.jpg    street and shop photos, one id space
    OUT/deepfashion2/validation/{annos,image}/         the test products in DeepFashion2's format
                                                       (deepfashion2_view.py)

As in Exact Street2Shop: train and test share no product and no street photo;
a street photo may show products of two categories (then it is in both pair
files); a pair of shoes gives two pair records for one (photo, product);
the gallery (retrieval files) holds the shop photos of every product of the
category, those with street photos and distractors without.

ModaNet-style photos are separate scenes with garments not in the catalogue,
so the detector never sees a test product in training: street photos, and a
share (``modanet_catalogue_prob``) in the catalogue's style (:func:`modanet_style_photo`).

Every photo is drawn from its own Generator seeded by (seed, stream, index), so
a seed gives byte-identical files on one machine.
"""
from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np

from ...runs.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from ...runs.manifest import read_manifest
from ...runs.stage import Stage
from ...utils.progress import progress
from ..attributes import attributes_path, write_attributes
from ..categories import load_categories
from ..shop_boxes import write_shop_boxes
from .deepfashion2_view import write_deepfashion2_view
from .garments import PRODUCT_LABEL, GarmentSpec, sample_garment
from .scenes import NOT_WORN_TOGETHER, Instance, shop_photo, street_photo

logger = logging.getLogger(__name__)

# Streams of the per-photo Generators.
_STREAM_PRODUCTS, _STREAM_SHOP, _STREAM_STREET, _STREAM_MODANET = 1, 2, 3, 4
# ModaNet labels that cannot be worn together with each other.
_BODY_GROUP = {"top": "upper", "outer": "upper", "pants": "lower", "shorts": "lower", "skirt": "lower",
               "dress": "full"}


@dataclass(frozen=True)
class SynthConfig:
    seed: int = 0
    n_products: int = 200            # products with street photos (split into train and test)
    n_distractors: int = 100         # gallery-only products
    test_fraction: float = 0.5       # share of the products (and their street photos) in test
    shop_photos_min: int = 2
    shop_photos_max: int = 4
    street_photos_min: int = 1
    street_photos_max: int = 2
    shop_on_figure_prob: float = 0.3
    second_product_prob: float = 0.25  # a street photo also shows a product of another category
    n_modanet_train: int = 400
    n_modanet_val: int = 40
    modanet_catalogue_prob: float = 0.4  # ModaNet-style photos drawn catalogue-style (modanet_style_photo)
    street_height_px: int = 384
    street_width_px: int = 256
    shop_height_px: int = 320
    shop_width_px: int = 256
    jpeg_quality: int = 90


@dataclass
class Product:
    product_id: int
    category: str        # Street2Shop category
    split: str           # "train", "test" or "distractor"
    spec: GarmentSpec


def _rng(cfg: SynthConfig, stream: int, index: int) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, stream, index])


def _compatible(a: str, b: str) -> bool:
    """Whether products of ModaNet labels `a` and `b` can be worn, both visible, in one street photo."""
    if a == b or {a, b} & {"footwear", "boots"} == {a, b}:
        return False
    ga, gb = _BODY_GROUP.get(a), _BODY_GROUP.get(b)
    if ga and gb and (ga == gb or "full" in (ga, gb)):
        return False
    return frozenset((a, b)) not in NOT_WORN_TOGETHER


def make_catalogue(cfg: SynthConfig, categories: Tuple[str, ...]) -> List[Product]:
    rng = _rng(cfg, _STREAM_PRODUCTS, 0)
    n_total = cfg.n_products + cfg.n_distractors
    # Balanced categories, and the train/test split stratified by category so that
    # every category has test queries; product ids are a shuffled range, so they
    # carry no category.
    cats = [categories[i % len(categories)] for i in range(cfg.n_products)]
    cats += [categories[i % len(categories)] for i in range(cfg.n_distractors)]
    splits = []
    for i, cat in enumerate(cats[: cfg.n_products]):
        n_cat = cats[: cfg.n_products].count(cat)
        rank = cats[:i].count(cat)
        splits.append("test" if rank < max(1, round(n_cat * cfg.test_fraction)) else "train")
    splits += ["distractor"] * cfg.n_distractors
    ids = 1000 + rng.permutation(n_total)
    products = []
    for i in range(n_total):
        split = splits[i]
        label = PRODUCT_LABEL[cats[i]]
        if label == "footwear" and rng.uniform() < 0.3:
            label = "boots"
        spec = sample_garment(label, rng, product_category=cats[i])
        products.append(Product(int(ids[i]), cats[i], split, spec))
    return products


def _box_record(inst: Instance) -> Dict[str, int]:
    x0, y0, x1, y1 = inst.box_xyxy
    left, top = int(np.floor(x0)), int(np.floor(y0))
    return {"left": left, "top": top, "width": int(np.ceil(x1)) - left, "height": int(np.ceil(y1)) - top}


def _encode_jpeg(img_rgb: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", img_rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG")
    return buf.tobytes()


def _coco_annotation(inst: Instance, ann_id: int, image_id: int, category_id: int) -> Dict:
    seg = [[int(round(v)) for v in p.reshape(-1)] for p in inst.polygons if len(p) >= 3]
    area = int(round(sum(abs(cv2.contourArea(p.astype(np.float32))) for p in inst.polygons)))
    x0, y0, x1, y1 = inst.box_xyxy
    bbox = [int(round(x0)), int(round(y0)), int(round(x1 - x0)), int(round(y1 - y0))]
    return {"segmentation": seg, "area": area, "iscrowd": 0, "image_id": image_id, "bbox": bbox,
            "category_id": category_id, "id": ann_id}


def shop_jobs(cfg: SynthConfig, products: List[Product]) -> List[Tuple[Product, int]]:
    """(product, photo id) of every shop photo, numbered from 1 in the order they are drawn."""
    jobs = []
    for i, p in enumerate(products):
        rng = _rng(cfg, _STREAM_SHOP, i)
        for _ in range(int(rng.integers(cfg.shop_photos_min, cfg.shop_photos_max + 1))):
            jobs.append((p, len(jobs) + 1))
    return jobs


def _shop_stream(cfg: SynthConfig, photo_id: int) -> np.random.Generator:
    """The seeded stream of shop photo ``photo_id`` (numbered from 1 in the order they are drawn)."""
    return _rng(cfg, _STREAM_SHOP, 100000 + photo_id - 1)


def render_shop_photo(cfg: SynthConfig, p: Product, photo_id: int) -> Tuple[np.ndarray, Dict]:
    """Shop photo ``photo_id`` and its shop_boxes.json record: the boxes of its product's instances (pieces)
    and the box around them all."""
    rng = _shop_stream(cfg, photo_id)
    rng.uniform()  # the draw shop_on_figure makes (its first): the photo's other draws follow it
    img, instances = shop_photo(p.spec, rng, size_hw=(cfg.shop_height_px, cfg.shop_width_px),
                                on_figure=shop_on_figure(cfg, photo_id), tag=str(p.product_id))
    pieces = [[float(v) for v in i.box_xyxy] for i in instances if i.tag == str(p.product_id)]
    if not pieces:
        pieces = [[0.0, 0.0, float(cfg.shop_width_px), float(cfg.shop_height_px)]]
    boxes = np.array(pieces, np.float64)
    box = [float(boxes[:, 0].min()), float(boxes[:, 1].min()), float(boxes[:, 2].max()), float(boxes[:, 3].max())]
    return img, {"photo": photo_id, "product": p.product_id, "category": p.category, "box_xyxy": box,
                 "piece_boxes_xyxy": pieces}


def write_street2shop(cfg: SynthConfig, out: Path, products: List[Product], categories: Tuple[str, ...]) -> Dict:
    root = out / "street2shop"
    img_dir = root / "images"
    by_split: Dict[str, List[Product]] = defaultdict(list)
    for p in products:
        by_split[p.split].append(p)
    retrieval: Dict[str, List[Dict]] = {c: [] for c in categories}
    pairs: Dict[Tuple[str, str], List[Dict]] = {(s, c): [] for s in ("train", "test") for c in categories}

    shop_boxes = []
    for p, photo_id in progress(shop_jobs(cfg, products), "shop photos"):
        img, record = render_shop_photo(cfg, p, photo_id)
        atomic_write_bytes(img_dir / f"{photo_id:09d}.jpg", _encode_jpeg(img, cfg.jpeg_quality), fsync=False)
        retrieval[p.category].append({"photo": photo_id, "product": p.product_id})
        shop_boxes.append(record)
    write_shop_boxes(root, shop_boxes)
    next_photo_id = len(shop_boxes) + 1

    street_index = 0
    for split in ("train", "test"):
        pool = by_split[split]
        for p in progress(pool, f"street photos ({split})", unit="product"):
            rng = _rng(cfg, _STREAM_STREET, p.product_id)
            for _ in range(int(rng.integers(cfg.street_photos_min, cfg.street_photos_max + 1))):
                wearing = {p.spec.modanet_label: (p.spec, p)}
                if rng.uniform() < cfg.second_product_prob:
                    partners = [q for q in pool if q.category != p.category
                                and _compatible(q.spec.modanet_label, p.spec.modanet_label)]
                    if partners:
                        q = partners[int(rng.integers(len(partners)))]
                        wearing[q.spec.modanet_label] = (q.spec, q)
                photo_id = next_photo_id
                next_photo_id += 1
                photo_rng = _rng(cfg, _STREAM_STREET, 10_000_000 + street_index)
                street_index += 1
                img, instances = street_photo({k: (s, str(prod.product_id)) for k, (s, prod) in wearing.items()},
                                              photo_rng, size_hw=(cfg.street_height_px, cfg.street_width_px))
                atomic_write_bytes(img_dir / f"{photo_id:09d}.jpg", _encode_jpeg(img, cfg.jpeg_quality), fsync=False)
                products_by_id = {str(prod.product_id): prod for _, prod in wearing.values()}
                for inst in instances:
                    if inst.tag is None:
                        continue
                    prod = products_by_id[inst.tag]
                    pairs[(split, prod.category)].append(
                        {"photo": photo_id, "product": prod.product_id, "bbox": _box_record(inst)})

    json_dir = root / "meta" / "json"
    counts = {}
    for c in categories:
        atomic_write_json(json_dir / f"retrieval_{c}.json", retrieval[c], fsync=False)
        for split in ("train", "test"):
            atomic_write_json(json_dir / f"{split}_pairs_{c}.json", pairs[(split, c)], fsync=False)
        counts[c] = {"gallery": len(retrieval[c]), "train_pairs": len(pairs[("train", c)]),
                     "test_pairs": len(pairs[("test", c)])}
    return counts


def shop_on_figure(cfg: SynthConfig, photo_id: int) -> bool:
    """Whether shop photo ``photo_id`` shows its garment on a figure: the first draw of the photo's seeded
    stream (shop photos are numbered from 1 in the order :func:`write_street2shop` draws them)."""
    return bool(_shop_stream(cfg, photo_id).uniform() < cfg.shop_on_figure_prob)


def product_attributes(spec: GarmentSpec) -> Dict[str, str]:
    """The attributes a product's look is drawn from: base colour (hex RGB), pattern, trim, badge."""
    look = spec.look
    trim = {0.0: "none", 0.025: "thin", 0.045: "thick"}.get(look.trim_width, f"{look.trim_width:g}")
    return {"colour": "#{:02x}{:02x}{:02x}".format(*look.base_rgb), "pattern": look.pattern, "trim": trim,
            "badge": look.badge}


def write_product_attributes(out: Path, products: List[Product]) -> None:
    rows = {(p.category, p.product_id): product_attributes(p.spec) for p in products}
    write_attributes(attributes_path(out / "street2shop"), rows, ["colour", "pattern", "trim", "badge"])


def modanet_style_photo(cfg: SynthConfig, rng: np.random.Generator, modanet_labels: Tuple[str, ...],
                        size_hw: Tuple[int, int]) -> Tuple[np.ndarray, List[Instance]]:
    """A photo for detector training: a street photo, or (``modanet_catalogue_prob``) a catalogue-style one of a
    garment of any label, flat on a plain background or worn (as often as shop photos are worn).

    The catalogue-style share stands in for what lets the paper's detector, trained on ModaNet's street
    photos, still find the garment in a shop photo: an ImageNet-pretrained backbone. The demo's detector
    starts from random weights and learns only what these photos show.
    """
    if rng.uniform() >= cfg.modanet_catalogue_prob:
        return street_photo({}, rng, size_hw=size_hw)
    label = str(rng.choice(modanet_labels))
    on_figure = bool(rng.uniform() < cfg.shop_on_figure_prob)
    return shop_photo(sample_garment(label, rng), rng, size_hw=size_hw, on_figure=on_figure, tag=None)


def write_modanet(cfg: SynthConfig, out: Path, modanet_labels: Tuple[str, ...]) -> Dict:
    root = out / "modanet"
    categories = [{"supercategory": "fashion", "id": i + 1, "name": n} for i, n in enumerate(modanet_labels)]
    header = {"year": 2018, "type": "instances", "categories": categories, "licenses": [],
              "info": {"description": "detret synthetic ModaNet-style dataset", "version": "1.0",
                       "contributor": "detret", "date_created": "synthetic"}}
    counts = {}
    ann_id = 1
    for split, n_images, first_id in (("train", cfg.n_modanet_train, 1), ("val", cfg.n_modanet_val, 9_000_000)):
        images, annotations = [], []
        for k in progress(range(n_images), f"ModaNet-style photos ({split})"):
            image_id = first_id + k
            rng = _rng(cfg, _STREAM_MODANET, image_id)
            size_hw = (cfg.street_height_px, cfg.street_width_px)
            img, instances = modanet_style_photo(cfg, rng, modanet_labels, size_hw)
            name = f"{image_id:07d}.jpg"
            atomic_write_bytes(root / "images" / name, _encode_jpeg(img, cfg.jpeg_quality), fsync=False)
            images.append({"file_name": name, "width": size_hw[1], "id": image_id, "license": 0,
                           "height": size_hw[0]})
            if split == "val":
                continue  # the official val file carries no annotations
            for inst in instances:
                annotations.append(_coco_annotation(inst, ann_id, image_id, modanet_labels.index(inst.label) + 1))
                ann_id += 1
        doc = dict(header, images=images, annotations=annotations)
        atomic_write_text(root / "annotations" / f"modanet2018_instances_{split}.json", json.dumps(doc) + "\n",
                          fsync=False)
        counts[split] = {"images": len(images), "annotations": len(annotations)}
    return counts


_PIPELINE_YAML = """\
# Pipeline config for the synthetic dataset written by `detret data synth`.
# Relative paths are relative to this file.
run_dir: runs
seed: {seed}
data:
  modanet:
    annotations: modanet/annotations/modanet2018_instances_train.json
    images: modanet/images
  street2shop:
    root: street2shop
  deepfashion2:
    # the synthetic test products in DeepFashion2's format (detret/data/synth/deepfashion2_view.py)
    root: deepfashion2
detector:
  # The small detector that trains in minutes on a CPU (detectron_configs/).
  config_file: mask_rcnn_R_18_FPN_synth_cpu.yaml
retrieval:
  # Small and from scratch, so that it trains in minutes on a CPU with no download
  # (the paper: ResNet-50 from ImageNet weights, 800 px).
  train:
    architecture: resnet18
    pretrained: false
    dim: 128
    image_size: 128
    resize: square
    batch_size: 16
    lr: 0.0003
    epochs: 3
    # From scratch, a wider triplet margin keeps the loss from collapsing (tri-full, 3 epochs:
    # validation mAP 33.4 -> 44.6 with 0.3, 33.4 -> 34.8 with 0.1).
    margin: 0.3
"""


SYNTH_STAGE = "data-synth"


def is_synthetic(street2shop_root: Path) -> bool:
    """Whether a Street2Shop root is this generator's (``<out>/street2shop`` of a data-synth stage)."""
    if not street2shop_root:
        return False
    try:
        manifest = read_manifest(Path(street2shop_root).parent)
    except ValueError:
        return False
    return manifest is not None and manifest.stage == SYNTH_STAGE


def generate(cfg: SynthConfig, out: Path, *, force: bool = False, command: Optional[str] = None) -> Dict:
    """Write the dataset under `out`; returns a summary (counts). Reuses a finished identical run."""
    out = Path(out)
    stage = Stage(out, SYNTH_STAGE, config=asdict(cfg), inputs={}, command=command)
    outputs = {
        "modanet_train": "modanet/annotations/modanet2018_instances_train.json",
        "modanet_val": "modanet/annotations/modanet2018_instances_val.json",
        "modanet_images": "modanet/images",
        "street2shop_json": "street2shop/meta/json",
        "street2shop_attributes": "street2shop/meta/attributes.csv",
        "street2shop_shop_boxes": "street2shop/meta/shop_boxes.json",
        "street2shop_images": "street2shop/images",
        "deepfashion2": "deepfashion2/validation/annos",
        "pipeline_config": "detret.yaml",
    }
    reused = stage.reuse_or_begin(force=force)
    cats = load_categories()
    if reused is not None:
        return reused
    products = make_catalogue(cfg, cats.street2shop)
    write_product_attributes(out, products)
    summary = {
        "street2shop": write_street2shop(cfg, out, products, cats.street2shop),
        "modanet": write_modanet(cfg, out, cats.modanet),
        "deepfashion2": write_deepfashion2_view(out, cats.deepfashion2, lambda photo: shop_on_figure(cfg, photo)),
        "products": {s: sum(p.split == s for p in products) for s in ("train", "test", "distractor")},
    }
    atomic_write_text(out / "detret.yaml", _PIPELINE_YAML.format(seed=cfg.seed))
    return stage.finish(summary, outputs)
