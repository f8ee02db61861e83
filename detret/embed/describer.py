"""A descriptor run as a function of photos: what ``embed`` (and ``combine``) compute, for new photos.

A descriptor run is a tree. A leaf is one ``embed`` run: its checkpoints, each reading the
crop at its own image size, concatenated and L2-normalised, averaged over the run's scales
(:func:`detret.embed.inference.describe_crops`). A node is an ``combine`` run: its
members' descriptors concatenated and L2-normalised, in order; or a ``whiten`` run: its one
child's descriptors whitened and reduced (:mod:`detret.embed.whiten`).

Each leaf also records how its gallery was cut (``gallery_crops``: ``detected`` or ``full``),
so that a new shop photo gets the descriptor the run's gallery rows have: the ensemble "Tris"
reads the whole photo for its Tri DB F member and the detected crop for Tri DB C. Queries
(street photos) are always read at their crop.

The tree is written as plain JSON (:meth:`DescriptorSpec.to_json`)::

    {"combine": [<spec>, <spec>, ...]}
    {"whiten": {"checkpoint": "<whitening.npz>", "sha256", "method", "dim"}, "of": <spec>}
    {"models": [{"name", "checkpoint", "sha256"}], "scales": [1.0], "precision": "fp32",
     "gallery_crops": "detected" | "full", "crop": "mask", "mask_fill": "white" | "mean",
     "engine": "onnxruntime"}

``crop``/``mask_fill`` appear only for mask crops (the chosen detection's mask removes the background,
``detret/detect/masks.py``); a leaf without them cuts boxes, as every leaf did before. ``engine`` appears only
for a leaf run by ONNX Runtime (``precision`` fp32 or int8, :mod:`detret.retrieval.onnx_engine`); without it the
leaf runs on torch. The service may run a tree on another engine than it was built with
(:meth:`DescriptorSpec.with_engine`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..config.choices import ShopCrops, check_choice, check_engine
from ..data.boxes import BoxXYXY
from ..errors import InputError, MissingFileError
from ..retrieval.descriptor_model import DescriptorNet, load_descriptor_model
from ..runs.layout import RunLayout
from ..runs.stage import SUMMARY_NAME
from ..detect.masks import BOX, CropShape
from .inference import describe_crops
from .whitening import apply_whitening, read_whitening

SIDES = ("gallery", "query")


@dataclass
class DescriptorSpec:
    """One node of a descriptor tree (see the module docstring); ``children`` set for a combine."""

    models: List[Dict] = field(default_factory=list)        # {"name", "checkpoint", "sha256"}
    scales: List[float] = field(default_factory=lambda: [1.0])
    precision: str = "fp32"
    gallery_crops: str = "detected"
    children: List["DescriptorSpec"] = field(default_factory=list)
    whiten: Optional[Dict] = None   # {"checkpoint": <whitening.npz>, "sha256", "method", "dim"}: of children[0]
    crop: CropShape = BOX           # box, or mask crops (and their fill)
    engine: str = "torch"           # what runs the leaf's models: torch, or onnxruntime

    @property
    def shape_json(self) -> Dict:
        shape = {"crop": self.crop.shape, "mask_fill": self.crop.fill} if self.crop.shape == "mask" else {}
        return {**shape, "engine": self.engine} if self.engine != "torch" else shape

    def needs_masks(self) -> bool:
        """Whether any leaf cuts its crops by the detection's mask."""
        return any(leaf.crop.shape == "mask" for leaf in self.leaves())

    def to_json(self) -> Dict:
        if self.whiten is not None:
            return {"whiten": dict(self.whiten), "of": self.children[0].to_json()}
        if self.children:
            return {"combine": [c.to_json() for c in self.children]}
        return {"models": self.models, "scales": list(self.scales), "precision": self.precision,
                "gallery_crops": self.gallery_crops, **self.shape_json}

    @classmethod
    def from_json(cls, obj: Dict) -> "DescriptorSpec":
        if "whiten" in obj:
            return cls(children=[cls.from_json(obj["of"])], whiten=dict(obj["whiten"]))
        if "combine" in obj:
            return cls(children=[cls.from_json(c) for c in obj["combine"]])
        check_choice(obj.get("gallery_crops", "detected"), ShopCrops, "gallery_crops of a descriptor model")
        check_engine(obj.get("engine", "torch"), obj.get("precision", "fp32"), "a descriptor model's")
        return cls(models=list(obj["models"]), scales=list(obj["scales"]), precision=obj.get("precision", "fp32"),
                   gallery_crops=obj.get("gallery_crops", "detected"), crop=_crop_of(obj),
                   engine=obj.get("engine", "torch"))

    def leaves(self) -> List["DescriptorSpec"]:
        return [leaf for c in self.children for leaf in c.leaves()] if self.children else [self]

    def model_files(self) -> List[Dict]:
        """Every file the tree reads ({"checkpoint", "sha256", ...}): the leaves' checkpoints and the whitenings."""
        own = [self.whiten] if self.whiten is not None else list(self.models)
        return own + [f for c in self.children for f in c.model_files()]

    def identity(self) -> Dict:
        """What decides the descriptors: checkpoint contents (never their paths), scales, precision, crops."""
        if self.whiten is not None:
            return {"whiten": {k: self.whiten[k] for k in ("sha256", "method", "dim")},
                    "of": self.children[0].identity()}
        if self.children:
            return {"combine": [c.identity() for c in self.children]}
        return {"sha256": [m["sha256"] for m in self.models], "scales": list(self.scales),
                "precision": self.precision, "gallery_crops": self.gallery_crops, **self.shape_json}

    def with_checkpoints(self, move: Callable[[Dict], str]) -> "DescriptorSpec":
        """The same tree with each model's checkpoint path replaced by ``move(model)`` (a whitening's too)."""
        if self.whiten is not None:
            return DescriptorSpec(children=[self.children[0].with_checkpoints(move)],
                                  whiten={**self.whiten, "checkpoint": move(self.whiten)})
        if self.children:
            return DescriptorSpec(children=[c.with_checkpoints(move) for c in self.children])
        return DescriptorSpec([{**m, "checkpoint": move(m)} for m in self.models], list(self.scales),
                              self.precision, self.gallery_crops, crop=self.crop, engine=self.engine)

    def with_engine(self, engine: str, precision: str) -> "DescriptorSpec":
        """The same tree with every leaf run by ``engine`` at ``precision`` (the service's ``--engine``)."""
        check_engine(engine, precision, "descriptor models'")
        if self.children:
            return DescriptorSpec(children=[c.with_engine(engine, precision) for c in self.children],
                                  whiten=self.whiten)
        return DescriptorSpec(list(self.models), list(self.scales), precision, self.gallery_crops, crop=self.crop,
                              engine=engine)


def _crop_of(obj: Dict) -> CropShape:
    return CropShape(obj.get("crop", "box"), obj.get("mask_fill", "white"))


def spec_of_embed_run(run_dir: Path, name: str) -> DescriptorSpec:
    """The descriptor tree of the finished descriptor run ``embed-<name>`` of ``run_dir``."""
    folder = RunLayout(run_dir).embed(name)
    models_file = folder / "models.json"
    if not models_file.is_file():
        raise MissingFileError(f"{models_file}: no descriptor run '{name}' here (detret embed -m ... --name {name})")
    spec = json.loads(models_file.read_text())
    if "whiten" in spec:
        w = spec["whiten"]
        return DescriptorSpec(children=[spec_of_embed_run(run_dir, w["of"])],
                              whiten={"checkpoint": str(folder / w["file"]), "sha256": w["sha256"],
                                      "method": w["method"], "dim": int(w["dim"])})
    if "combine" in spec:
        return DescriptorSpec(children=[spec_of_embed_run(run_dir, m) for m in spec["combine"]])
    summary_file = folder / SUMMARY_NAME
    crops = json.loads(summary_file.read_text()).get("gallery_crops", "detected") if summary_file.is_file() \
        else "detected"
    models = [{"name": m["name"], "checkpoint": m["checkpoint"], "sha256": m["sha256"]} for m in spec["models"]]
    return DescriptorSpec(models, list(spec["scales"]), spec.get("precision", "fp32"), crops, crop=_crop_of(spec),
                          engine=spec.get("engine", "torch"))


class Describer:
    """A loaded descriptor tree: photos and boxes -> [n, D] float32 L2-normalised descriptors."""

    def __init__(self, spec: DescriptorSpec, device, calibration: Optional[Callable[[], List[np.ndarray]]] = None,
                 engines: Optional[Path] = None) -> None:
        """``calibration``/``engines``: for leaves on the onnxruntime engine, the gallery crops that calibrate
        int8 and where the exported graphs are kept (default: beside each checkpoint)."""
        self.spec, self.device = spec, torch.device(device)
        self.children = [Describer(c, device, calibration, engines) for c in spec.children]
        self.models: List[DescriptorNet] = [
            load_descriptor_model(Path(m["checkpoint"]), self.device, spec.engine, spec.precision, calibration,
                                  "gallery crops", engines) for m in spec.models]
        self.dim = sum(c.dim for c in self.children) if self.children else sum(m.dim for m in self.models)
        self.whitening = None
        if spec.whiten is not None:
            self.whitening = read_whitening(Path(spec.whiten["checkpoint"]))
            self.dim = int(self.whitening[1].shape[0])

    def all_models(self) -> List[DescriptorNet]:
        """Every loaded model of the tree, leaves in order."""
        return [m for c in self.children for m in c.all_models()] + list(self.models)

    def describe(self, photos: Sequence[np.ndarray], boxes: Sequence[Optional[BoxXYXY]], side: str,
                 masks: Optional[Sequence[Optional[Dict]]] = None) -> np.ndarray:
        """[n, D] descriptors of ``photos`` ([H, W, 3] uint8) cut by ``boxes`` (None: the whole photo),
        as ``embed`` computes the rows of ``side`` ("gallery": shop photos, "query": street photos);
        ``masks``: each crop's detection mask (run-length encoded, or None), read by mask-crop leaves."""
        if side not in SIDES:
            raise InputError(f"side {side!r} is not one of {', '.join(SIDES)}")
        if not photos:
            return np.zeros((0, self.dim), np.float32)
        if self.whitening is not None:
            return apply_whitening(self.children[0].describe(photos, boxes, side, masks), *self.whitening)
        if self.children:
            parts = [c.describe(photos, boxes, side, masks) for c in self.children]
            return F.normalize(torch.from_numpy(np.concatenate(parts, axis=1)), dim=1).numpy()
        whole = side == "gallery" and self.spec.gallery_crops == "full"
        masks = list(masks) if masks is not None else [None] * len(photos)
        crops = [self.spec.crop.cut(p, None if whole else b, m) for p, b, m in zip(photos, boxes, masks)]
        domain = "shop" if side == "gallery" else "street"  # the stream of a two-stream network
        out = describe_crops(self.models, crops, self.spec.scales, self.device, self.spec.precision, domain)
        return np.ascontiguousarray(out.numpy(), dtype=np.float32)
