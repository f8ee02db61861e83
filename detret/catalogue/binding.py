"""The model a catalogue is bound to (``model.json``), and that model loaded for adds and queries.

``model.json`` (format ``detret.catalogue.model/1``)::

    {"format", "run": "<descriptor run it came from>", "dim": D, "index_factory": "Flat",
     "descriptor": <descriptor tree of embed/describer.py, checkpoints as "models/<sha256>.pt", whitenings
                    as "models/<sha256>.npz">,
     "detector": {"config": "models/detector.yaml", "weights": "models/detector.pth",
                  "weights_sha256", "config_identity_sha256"},
     "crop": {"policy": "category", "objectness_thresh": 0.5},
     "categories": {"labels": [detector labels], "category_map": {category: [labels]}},
     "identity": "<sha256>"}

The identity is the hash of what decides a descriptor: the model files' contents (never their
paths, never the data they were trained on), scales, precision, each member's gallery crops,
the detector's weights and config (device and batching left out), the crop policy and the
category map. The model files are copied into the catalogue, so it is served without the run;
they are checked against their hashes whenever they are loaded.
"""
from __future__ import annotations

import functools
import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..config.choices import EngineChoice
from ..data.boxes import BoxXYXY
from ..detect.crops import Crop, Detection, select_crop
from ..detect.engine import photos_reader
from ..detect.portable import PortableDetector
from ..detect.masks import BOX, CropShape
from ..embed.describer import Describer, DescriptorSpec, spec_of_embed_run
from ..errors import InputError, MissingFileError
from ..runs.atomic import atomic_path, atomic_write_json
from ..runs.layout import RunLayout
from ..retrieval.descriptor_model import copy_model, model_sha256, model_suffix
from ..retrieval.foundation import FoundationSpec, materialise
from ..retrieval.foundation.sources import locate
from ..runs.manifest import sha256_file
from ..runs.stage import require_fresh
from .engines import detector_folder, open_catalogue_detector, stored_photos, write_bundle
from .layout import CatalogueLayout

MODEL_FORMAT = "detret.catalogue.model/1"
# A catalogue without a detector (``catalogue create --descriptor ... --no-detector``): whole photos
NO_DETECTOR_CROP = {"policy": "full", "objectness_thresh": 0.5}
REMEMBERED_DETECTIONS = 4096


class ModelMismatch(InputError):
    """The catalogue's model files or a descriptor model other than the catalogue's own."""


@dataclass
class ModelCard:
    run: str
    descriptor: DescriptorSpec
    detector: Dict
    crop: Dict
    categories: Dict
    dim: int
    index_factory: str
    identity: str = ""

    def to_json(self) -> Dict:
        return {"format": MODEL_FORMAT, "run": self.run, "dim": self.dim, "index_factory": self.index_factory,
                "descriptor": self.descriptor.to_json(), "detector": self.detector, "crop": self.crop,
                "categories": self.categories, "identity": self.identity}

    @property
    def category_map(self) -> Dict[str, List[str]]:
        return self.categories["category_map"]

    def compute_identity(self) -> str:
        detector = self.detector or {}
        decided_by = {"descriptor": self.descriptor.identity(), "detector_weights": detector.get("weights_sha256"),
                      "detector_config": detector.get("config_identity_sha256"), "crop": self.crop,
                      "categories": self.categories}
        return hashlib.sha256(json.dumps(decided_by, sort_keys=True).encode()).hexdigest()


def read_card(root: Path) -> ModelCard:
    path = CatalogueLayout(root).model
    if not path.is_file():
        raise MissingFileError(f"{root}: not a catalogue (no {path.name}); create one with "
                               "`detret --config RUN.yaml catalogue create DIR --run NAME`")
    obj = json.loads(path.read_text())
    if obj.get("format") != MODEL_FORMAT:
        raise InputError(f"{path}: format {obj.get('format')!r}, expected {MODEL_FORMAT}")
    return ModelCard(obj["run"], DescriptorSpec.from_json(obj["descriptor"]), obj["detector"], obj["crop"],
                     obj["categories"], int(obj["dim"]), obj["index_factory"], obj["identity"])


def _copy_in(src: Path, root: Path, relative: str) -> str:
    copy_model(src, root / relative)
    return relative


def _copy_detector_weights(src: Path, root: Path, relative: str) -> str:
    """The detector's weights only: a Detectron2 training checkpoint also holds the optimizer's state
    (about half its size), which a catalogue never needs. Other formats are copied as they are."""
    try:
        ckpt = torch.load(src, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 -- not a plain torch checkpoint (a model zoo .pkl): copied unchanged
        ckpt = None
    if not (isinstance(ckpt, dict) and isinstance(ckpt.get("model"), dict)):
        return _copy_in(src, root, relative)
    with atomic_path(root / relative) as tmp:
        torch.save({"model": ckpt["model"]}, tmp)
    return relative


def _bind_detector(pcfg, root: Path) -> Tuple[Dict, Dict]:
    """(detector, crop) of the card: the pipeline's detector copied into ``root``, and its crop policy."""
    from ..detect.config import choose_detector, detector_identity

    choice = choose_detector(pcfg, "cpu")
    _copy_detector_weights(choice.weights_file, root, "models/detector.pth")
    cfg = choice.cfg.clone()
    cfg.defrost()
    cfg.MODEL.WEIGHTS = ""
    (root / "models" / "detector.yaml").write_text(cfg.dump())
    detector = {"config": "models/detector.yaml", "weights": "models/detector.pth",
                "weights_sha256": sha256_file(root / "models" / "detector.pth"),
                "config_identity_sha256": hashlib.sha256(detector_identity(cfg).encode()).hexdigest(),
                "masks": bool(cfg.MODEL.MASK_ON)}
    return detector, {"policy": str(cfg.DETRET.CROP.POLICY), "objectness_thresh": float(cfg.DETRET.CROP.OBJECTNESS_THRESH)}


def _finish_card(pcfg, root: Path, run: str, spec: DescriptorSpec, index_factory: str, with_detector: bool
                 ) -> ModelCard:
    """The card of a catalogue whose descriptor models (already copied into ``root``) are ``spec``: the
    pipeline's detector with it, or none (``with_detector`` False: given boxes, else whole photos)."""
    from ..data.categories import load_categories

    detector, crop = _bind_detector(pcfg, root) if with_detector else (None, dict(NO_DETECTOR_CROP))
    if spec.needs_masks() and (detector is None or not detector["masks"]):
        raise InputError(f"{root}: the descriptor cuts mask crops, but the detector predicts no masks (a detector "
                         "with MODEL.MASK_ON True is needed)")
    cats = load_categories(pcfg.data.category_map)
    card = ModelCard(run=run, descriptor=spec, index_factory=index_factory, dim=0, detector=detector, crop=crop,
                     categories={"labels": list(cats.modanet),
                                 "category_map": {c: list(v) for c, v in cats.street2shop_to_modanet.items()}})
    card.dim = Describer(spec.with_checkpoints(lambda m: str(root / m["checkpoint"])), "cpu").dim
    card.identity = card.compute_identity()
    atomic_write_json(CatalogueLayout(root).model, card.to_json())
    return card


def _copy_models(spec: DescriptorSpec, root: Path) -> DescriptorSpec:
    return spec.with_checkpoints(lambda m: _copy_in(Path(m["checkpoint"]), root,
                                                   f"models/{m['sha256']}{model_suffix(Path(m['checkpoint']))}"))


def bind_run(pcfg, run: str, root: Path, index_factory: str) -> ModelCard:
    """Copy the models of descriptor run ``run`` (and the run's detector) into ``root``; their card."""
    run_dir = Path(pcfg.run_dir)
    spec = spec_of_embed_run(run_dir, run)
    for leaf_name in _leaf_runs(run_dir, run):
        require_fresh(RunLayout(run_dir).embed(leaf_name), f"the descriptors '{leaf_name}' (detret embed)")
    for m in spec.model_files():
        if model_sha256(Path(m["checkpoint"])) != m["sha256"]:
            raise ModelMismatch(f"{m['checkpoint']}: changed since `embed` used it; rerun `detret embed` first")
    return _finish_card(pcfg, root, run, _copy_models(spec, root), index_factory, with_detector=True)


def bind_foundation(pcfg, descriptor: str, weights: Optional[Path], root: Path, index_factory: str,
                    with_detector: bool, crop: CropShape = BOX) -> ModelCard:
    """A card for a foundation model used without training (``catalogue create --descriptor``): the model
    folder made inside ``root``, whole-photo descriptors for shop photos without a given box unless the
    pipeline's detector crops them."""
    spec = FoundationSpec.parse(descriptor)
    folder = materialise(spec, locate(spec, weights), root / "models" / f"{spec.safe_name}.staging")
    relative = f"models/{folder.identity}.foundation"
    folder.path.rename(root / relative)
    crops = "detected" if with_detector else "full"
    leaf = DescriptorSpec([{"name": spec.safe_name, "checkpoint": relative, "sha256": folder.identity}], [1.0],
                          "fp32", crops, crop=crop)
    return _finish_card(pcfg, root, str(spec), leaf, index_factory, with_detector)


def _leaf_runs(run_dir: Path, run: str) -> List[str]:
    spec = json.loads((RunLayout(run_dir).embed(run) / "models.json").read_text())
    if "whiten" in spec:
        return [run, *_leaf_runs(run_dir, spec["whiten"]["of"])]
    return [leaf for m in spec["combine"] for leaf in _leaf_runs(run_dir, m)] if "combine" in spec else [run]


def rebuild_hint(root: Path) -> str:
    return (f"rebuild it with `detret --config RUN.yaml catalogue reindex {root} --run NAME` "
            "(re-embeds every photo with the run's models)")


def verify_model_files(card: ModelCard, root: Path) -> None:
    """Refuse model files that are not the ones the catalogue was built with."""
    files = [(m["checkpoint"], m["sha256"]) for m in card.descriptor.model_files()]
    if card.detector is not None:
        files.append((card.detector["weights"], card.detector["weights_sha256"]))
    for relative, expected in files:
        path = Path(root) / relative
        if not path.exists():
            raise MissingFileError(f"{path}: model file of the catalogue is missing; {rebuild_hint(root)}")
        if model_sha256(path) != expected:
            raise ModelMismatch(f"{path}: not the model file this catalogue was built with (sha256 differs); "
                                f"{rebuild_hint(root)}")


def _whole_photos(root: Path, n: int = 64) -> List[np.ndarray]:
    """The first ``n`` readable stored photos, whole (the descriptors' int8 calibration)."""
    return photos_reader(stored_photos(root))(n)


def _detect_arrays():
    from ..detect.inference import detect_arrays   # (imports Detectron2: only for the torch engine)

    return detect_arrays


class BoundModels:
    """The catalogue's detector and descriptor model, loaded once (for ``add`` and the service)."""

    def __init__(self, card: ModelCard, root: Path, device, engine: Optional[EngineChoice] = None) -> None:
        """``engine``: what runs the models (default: as the catalogue was built, torch unless its descriptor run
        was made on onnxruntime); onnxruntime keeps the exported models in ``engines/`` (catalogue/engines.py)."""
        verify_model_files(card, root)
        self.card, self.root, self.device = card, Path(root), torch.device(device)
        self.engine = engine
        spec = card.descriptor.with_checkpoints(lambda m: str(self.root / m["checkpoint"]))
        if engine is not None:
            spec = spec.with_engine(engine.engine, engine.precision)
        calibration = functools.partial(_whole_photos, self.root)
        self.describer = Describer(spec, self.device, calibration, CatalogueLayout(self.root).engines_dir)
        self._detector: Optional[Tuple] = None
        self._remembered: "OrderedDict[bytes, List[Detection]]" = OrderedDict()
        self._remembering = threading.Lock()

    def check_identity(self, identity: str) -> None:
        """Refuse descriptors of another model (a query model other than the catalogue's own)."""
        if identity != self.card.identity:
            raise ModelMismatch(f"{self.root}: bound to model {self.card.identity[:12]} (run '{self.card.run}'), "
                                f"not {identity[:12]}; {rebuild_hint(self.root)}")

    def _detector_cfg(self):
        from ..detect.config import build_detector_cfg

        # masks recorded exactly when a leaf cuts by them (a detector config may record them for another use)
        masks = ["DETRET.DETECT.MASKS", str(self.card.descriptor.needs_masks())]
        return build_detector_cfg(str(self.root / self.card.detector["config"]), masks,
                                  weights=str(self.root / self.card.detector["weights"]), device=str(self.device))

    @property
    def detector(self) -> Tuple:
        """(Detectron2 model, its cfg), or (the exported detector, None) on onnxruntime; loaded on first use."""
        if self._detector is None:
            if self.engine is not None and self.engine.engine == "onnxruntime":
                model = open_catalogue_detector(self.root, self.card.detector, self.card.descriptor.needs_masks(),
                                                self.engine.detector, str(self.device), self._detector_cfg)
                self._detector = (model, None)
            else:
                from ..detect.inference import load_detector

                cfg = self._detector_cfg()
                self._detector = (load_detector(cfg, str(self.root / self.card.detector["weights"]), self.device), cfg)
        return self._detector

    def export_engines(self) -> Path:
        """Make every model's onnxruntime engine now (the detector's and each descriptor network's) and write the
        bundle manifest (catalogue/engines.py); returns its path."""
        if self.engine is None or self.engine.engine != "onnxruntime":
            raise InputError("exporting a catalogue's models needs the onnxruntime engine")
        detector = None
        if self.card.detector is not None:
            self.detector   # noqa: B018 - made and loaded
            detector = detector_folder(self.root, self.card.detector["weights_sha256"],
                                       self.card.descriptor.needs_masks())
        return write_bundle(self.root, self.card.identity, self.engine, detector,
                            [m.folder for m in self.describer.all_models() if hasattr(m, "folder")])

    def detect(self, photos: Sequence[np.ndarray]) -> List[List[Detection]]:
        """Each photo's detections; none without a detector (the crop policy is then the whole photo). The
        last ``REMEMBERED_DETECTIONS`` photos' detections are remembered by the pixels' hash, so that a photo
        detected to name its category (a flat folder) is not detected again to be cropped."""
        if self.card.detector is None:
            return [[] for _ in photos]
        keys = [hashlib.blake2b(np.ascontiguousarray(p).tobytes() + str(p.shape).encode(), digest_size=16).digest()
                for p in photos]
        with self._remembering:   # (the service's batcher and its admin adds share the models)
            known = {key: self._remembered[key] for key in keys if key in self._remembered}
        todo = [i for i, key in enumerate(keys) if key not in known]
        if todo:
            model, cfg = self.detector
            found = [model.detect(photos[i]) for i in todo] if isinstance(model, PortableDetector) else \
                _detect_arrays()(model, cfg, [photos[i] for i in todo], self.card.categories["labels"], self.device)
            known.update({keys[i]: dets for i, dets in zip(todo, found)})
            with self._remembering:
                for i in todo:
                    self._remembered[keys[i]] = known[keys[i]]
                while len(self._remembered) > REMEMBERED_DETECTIONS:
                    self._remembered.popitem(last=False)
        return [known[key] for key in keys]

    def crop(self, detections: Sequence[Detection], category: str, size_wh: Tuple[int, int]) -> Crop:
        """The paper's crop of a photo of ``category`` (the catalogue's policy and threshold)."""
        return select_crop(detections, category, self.card.category_map, size_wh,
                           objectness_thresh=self.card.crop["objectness_thresh"], policy=self.card.crop["policy"])

    def categories_of(self, label: str) -> List[str]:
        """The retrieval categories a detector label may crop (shop the look)."""
        return [c for c, labels in self.card.category_map.items() if label in labels]

    def describe(self, photos: Sequence[np.ndarray], boxes: Sequence[Optional[BoxXYXY]], side: str,
                 masks: Optional[Sequence[Optional[Dict]]] = None) -> np.ndarray:
        """Descriptors of the crops (``masks``: each crop's detection mask, for mask crops)."""
        return self.describer.describe(photos, boxes, side, masks)
