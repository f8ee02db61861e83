"""A catalogue's models on ONNX Runtime: the bundle kept in ``CAT/engines/``.

``detret catalogue engine CAT --engine onnxruntime [--precision int8]`` (or the first ``serve``/``add`` with that
engine) exports the catalogue's own models there, derived from ``models/`` and never edited by hand::

    engines/detector-<weights sha256[:16]>-boxes|masks/   the detector (detret/detect/engine.py's folder)
    engines/<checkpoint stem>-<sha256[:16]>/              each trained descriptor network (retrieval/onnx_engine.py)
    engines/bundle-onnxruntime-<precision>.json           what follows

``bundle-*.json``::

    {"format": "detret.engine-bundle/1", "catalogue_identity": "<model.json's identity>", "engine": "onnxruntime",
     "precision": "int8", "detector_precision": "int8", "detector": "detector-.../", "descriptors": ["..."],
     "calibration": "the catalogue's stored photos, first N in content order",
     "needs": {"detector": ["onnxruntime", "numpy", "pillow", "pycocotools"],
               "descriptors": ["onnxruntime", "torch (resize and normalisation)"]}}

Once the detector's folder exists, serving loads it without Detectron2: the folder is found by the weights'
hash recorded in ``model.json`` and checked against its manifest (weights hash, masks). Making it needs
Detectron2 and torch (the graph is traced from Detectron2's model). Calibration photos are whole stored photos.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

from ..config.choices import EngineChoice
from ..detect.engine import ensure_engine, load_engine, photos_reader, read_engine
from ..detect.portable import PortableDetector
from ..errors import InputError, MissingFileError
from ..runs.atomic import atomic_write_json
from .layout import CatalogueLayout

BUNDLE_FORMAT = "detret.engine-bundle/1"
CALIBRATION = "the catalogue's stored photos, the first ones in content order"


def stored_photos(root: Path) -> List[Path]:
    """The catalogue's photo files in content-hash order (the calibration photos)."""
    return sorted(p for p in (Path(root) / "photos").glob("*/*") if p.is_file())


def detector_folder(root: Path, weights_sha256: str, masks: bool) -> Path:
    return CatalogueLayout(root).engines_dir / f"detector-{weights_sha256[:16]}-{'masks' if masks else 'boxes'}"


def _ready(folder: Path, weights_sha256: str, masks: bool, precision: str) -> bool:
    try:
        spec = read_engine(folder)
    except (MissingFileError, InputError):
        return False
    return spec.get("source", {}).get("weights_sha256") == weights_sha256 and bool(spec.get("masks")) == masks \
        and precision in spec.get("files", {}) and (folder / spec["files"][precision]).is_file()


def open_catalogue_detector(root: Path, detector: Dict, masks: bool, precision: str, device: str,
                            build_cfg) -> PortableDetector:
    """The catalogue's detector on ONNX Runtime: its kept folder, made first if missing (``build_cfg()``: the
    Detectron2 config, called only then)."""
    folder = detector_folder(root, detector["weights_sha256"], masks)
    if not _ready(folder, detector["weights_sha256"], masks, precision):
        ensure_engine(build_cfg(), str(Path(root) / detector["weights"]), folder, precision,
                      photos_reader(stored_photos(root)), CALIBRATION)
    return load_engine(folder, precision, device)


def write_bundle(root: Path, identity: str, choice: EngineChoice, detector: Optional[Path],
                 descriptors: List[Path]) -> Path:
    """The bundle manifest of the folders just made (see the module docstring)."""
    engines = CatalogueLayout(root).engines_dir
    path = engines / f"bundle-{choice.engine}-{choice.precision}.json"
    atomic_write_json(path, {
        "format": BUNDLE_FORMAT, "catalogue_identity": identity, "engine": choice.engine,
        "precision": choice.precision, "detector_precision": choice.detector,
        "detector": detector.name if detector is not None else None,
        "descriptors": [d.name for d in descriptors], "calibration": CALIBRATION,
        "needs": {"detector": ["onnxruntime", "numpy", "pillow", "pycocotools"],
                  "descriptors": ["onnxruntime", "torch (resize and normalisation)"]}})
    return path
