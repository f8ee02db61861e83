"""Detectron2 config for the detector: Detectron2's yacs system plus `add_detret_config`.

A detector is chosen by pointing at a config file:

- a path (absolute, relative to the current directory, or a file name in the
  repository's ``detectron_configs/``), e.g. ``mask_rcnn_R_50_FPN_modanet.yaml``;
- ``zoo:<path>``: any config of Detectron2's model zoo, e.g.
  ``zoo:COCO-Detection/faster_rcnn_R_101_FPN_3x.yaml``; its ROI heads are swapped
  for detret's objectness heads and its datasets for the registered ModaNet ones.

plus Detectron2 ``KEY VALUE`` overrides. The detector always predicts the 13
ModaNet labels: ``MODEL.ROI_HEADS.NUM_CLASSES`` is set to 13.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

from detectron2.config import CfgNode, get_cfg
from omegaconf import DictConfig

from ..config.choices import CropPolicy, DetectorOptimizer, Engine, Precision, check_choice, check_engine
from ..data.categories import load_categories
from ..errors import InputError, MissingFileError
from ..runs.layout import RunLayout
from ..runs.stage import require_built
from .backbones import BACKBONE_NAME  # (the import registers the backbone)
from .roi_heads import OBJECTNESS_HEADS  # noqa: F401  (imports register the heads)

logger = logging.getLogger(__name__)

REPO_CONFIG_DIR = Path(__file__).resolve().parents[2] / "detectron_configs"
ZOO_PREFIX = "zoo:"


class WeightsUnavailable(MissingFileError):
    """Pretrained weights named by the config cannot be had here; the message says what to do."""


def add_detret_config(cfg: CfgNode) -> None:
    """detret's keys, under DETRET (crop policy and batched inference)."""
    cfg.DETRET = CfgNode()
    cfg.DETRET.CROP = CfgNode()
    # "category": the paper's policy (Section 3.1); "top1": best detection of any
    # label; "full": always the whole photo (the "DB F" baseline).
    cfg.DETRET.CROP.POLICY = "category"
    cfg.DETRET.CROP.OBJECTNESS_THRESH = 0.5
    cfg.DETRET.DETECT = CfgNode()
    cfg.DETRET.DETECT.BATCH_SIZE = 4      # photos per forward pass
    cfg.DETRET.DETECT.NUM_WORKERS = 2     # DataLoader workers decoding photos
    # "fp32", or "bf16": the ResNet bottom-up under bfloat16 autocast, channels-last (faster
    # on CPUs with AMX/AVX512-BF16 and on GPUs; FPN, RPN and box heads stay fp32).
    # fp32 gives DefaultPredictor's crops; bf16 may change a crop where two detections' scores
    # are within bf16 precision of each other (measured with tools/benchmark.py detect).
    cfg.DETRET.DETECT.PRECISION = "fp32"
    # "torch", or "onnxruntime": the detector exported to one ONNX graph (detret/detect/onnx_export.py) run by
    # ONNX Runtime without Detectron2 (detret/detect/portable.py); PRECISION fp32 or int8 (static quantization).
    cfg.DETRET.DETECT.ENGINE = "torch"
    # int8: the photos that calibrate the activations' ranges (the first ones of the gallery, in photo order).
    cfg.DETRET.DETECT.CALIBRATION_PHOTOS = 64
    # Record each detection's Mask R-CNN mask (needs MODEL.MASK_ON True): what mask crops cut the garment
    # out with (detret/detect/masks.py). Off: the mask head is not run at inference (boxes only).
    cfg.DETRET.DETECT.MASKS = False
    cfg.DETRET.SOLVER = CfgNode()
    # "SGD" (Detectron2's), or "AdamW" (SOLVER.BASE_LR, SOLVER.WEIGHT_DECAY and the schedule apply to it too;
    # the synthetic CPU config trains from random weights with it: detectron_configs/*synth_cpu*).
    cfg.DETRET.SOLVER.OPTIMIZER = "SGD"
    cfg.DETRET.RESNET = CfgNode()
    # Blocks in res2-res5 of MODEL.BACKBONE.NAME build_basic_resnet_fpn_backbone (detret.detect.backbones).
    cfg.DETRET.RESNET.BLOCKS_PER_STAGE = [2, 2, 2, 2]



def resolve_config_file(name: str) -> str:
    """A config name -> a file Detectron2 can merge (see module docstring)."""
    if name.startswith(ZOO_PREFIX):
        from detectron2 import model_zoo

        try:
            return model_zoo.get_config_file(name[len(ZOO_PREFIX):])
        except RuntimeError as exc:
            raise MissingFileError(f"{name}: not a config of Detectron2's model zoo ({exc})") from exc
    path = Path(name).expanduser()
    if path.is_file():
        return str(path)
    local = REPO_CONFIG_DIR / name
    if local.is_file():
        return str(local)
    known = ", ".join(sorted(p.name for p in REPO_CONFIG_DIR.glob("*.yaml"))) if REPO_CONFIG_DIR.is_dir() else ""
    raise MissingFileError(f"{name}: detector config not found (detectron_configs/ has: {known}; "
                            f"or use zoo:<model zoo config>)")


def build_detector_cfg(
    config_file: str,
    opts: Sequence[str] = (),
    *,
    weights: Optional[str] = None,
    device: str = "cpu",
    output_dir: Optional[str] = None,
) -> CfgNode:
    """Merged, frozen Detectron2 config of the detector."""
    cfg = get_cfg()
    add_detret_config(cfg)
    path = resolve_config_file(config_file)
    try:
        cfg.merge_from_file(path)
    except KeyError as exc:
        raise InputError(f"{path}: {exc.args[0] if exc.args else exc}") from exc
    if config_file.startswith(ZOO_PREFIX):
        cfg.DATASETS.TRAIN = ("modanet_train",)
        cfg.DATASETS.TEST = ("modanet_holdout",)
    if len(opts) % 2:
        raise InputError(f"detector overrides must be KEY VALUE pairs, got an odd number: {list(opts)}")
    try:
        cfg.merge_from_list(list(opts))
    except (KeyError, ValueError, AssertionError) as exc:
        raise InputError(f"detector overrides {list(opts)}: {exc}") from exc
    if cfg.MODEL.ROI_HEADS.NAME in OBJECTNESS_HEADS:
        cfg.MODEL.ROI_HEADS.NAME = OBJECTNESS_HEADS[cfg.MODEL.ROI_HEADS.NAME]
    if cfg.MODEL.ROI_HEADS.NAME not in OBJECTNESS_HEADS.values():
        raise InputError(f"{path}: MODEL.ROI_HEADS.NAME {cfg.MODEL.ROI_HEADS.NAME!r} gives no proposal "
                         f"objectness; use one of {sorted(OBJECTNESS_HEADS.values())}")
    n_labels = len(load_categories().modanet)
    if cfg.MODEL.ROI_HEADS.NUM_CLASSES != n_labels:
        logger.info("MODEL.ROI_HEADS.NUM_CLASSES %d -> %d (the ModaNet labels)", cfg.MODEL.ROI_HEADS.NUM_CLASSES,
                    n_labels)
        cfg.MODEL.ROI_HEADS.NUM_CLASSES = n_labels
    check_choice(cfg.DETRET.CROP.POLICY, CropPolicy, f"{path}: DETRET.CROP.POLICY")
    check_choice(cfg.DETRET.DETECT.PRECISION, Precision, f"{path}: DETRET.DETECT.PRECISION")
    check_choice(cfg.DETRET.DETECT.ENGINE, Engine, f"{path}: DETRET.DETECT.ENGINE")
    check_engine(cfg.DETRET.DETECT.ENGINE, cfg.DETRET.DETECT.PRECISION, f"{path}: DETRET.DETECT")
    if cfg.DETRET.DETECT.CALIBRATION_PHOTOS < 1:
        raise InputError(f"{path}: DETRET.DETECT.CALIBRATION_PHOTOS must be at least 1")
    check_choice(cfg.DETRET.SOLVER.OPTIMIZER, DetectorOptimizer, f"{path}: DETRET.SOLVER.OPTIMIZER")
    if cfg.DETRET.DETECT.MASKS and not cfg.MODEL.MASK_ON:
        raise InputError(f"{path}: DETRET.DETECT.MASKS True records the detections' masks, but MODEL.MASK_ON is "
                         "False (a detector without a mask head); set MODEL.MASK_ON True and train it")
    if weights is not None:
        cfg.MODEL.WEIGHTS = str(weights)
    cfg.MODEL.DEVICE = device
    if output_dir is not None:
        cfg.OUTPUT_DIR = str(output_dir)
    cfg.freeze()
    return cfg


def check_weights_available(cfg: CfgNode) -> Optional[str]:
    """Local path of MODEL.WEIGHTS (None for random initialisation), fetched or found in the cache.

    Raises WeightsUnavailable before any work starts when they cannot be had
    (offline, missing file), saying how to provide them.
    """
    weights = cfg.MODEL.WEIGHTS
    if not weights:
        logger.warning("MODEL.WEIGHTS is empty: the detector starts from random initialisation")
        return None
    from detectron2.utils.file_io import PathManager

    try:
        local = PathManager.get_local_path(weights)
    except Exception as exc:  # noqa: BLE001 -- iopath raises whatever its handler's transport raises
        raise WeightsUnavailable(
            f"cannot fetch the detector weights {weights} ({type(exc).__name__}: {exc}). On a machine with "
            "network access download them, then pass the local file with --set "
            "detector.weights=/path/to/file (or Detectron2 option MODEL.WEIGHTS /path), or set "
            "MODEL.WEIGHTS '' to start from random initialisation") from exc
    if not Path(local).is_file():
        raise WeightsUnavailable(f"detector weights {weights}: no file at {local}")
    return local


def detector_identity(cfg: CfgNode) -> str:
    """The detector config as it decides the results, for manifests: device, batching, the output folder
    and the weights' path left out (the stages fingerprint the weights' content as an input), so the same
    detection on CPU or GPU, with other batch sizes, or in a run directory moved elsewhere counts as the
    same."""
    c = cfg.clone()
    c.defrost()
    c.OUTPUT_DIR = ""
    c.MODEL.WEIGHTS = ""
    c.MODEL.DEVICE = ""
    c.DETRET.DETECT.BATCH_SIZE = 0
    c.DETRET.DETECT.NUM_WORKERS = 0
    if c.MODEL.BACKBONE.NAME != BACKBONE_NAME:  # read by that backbone alone
        del c.DETRET["RESNET"]
    if not c.DETRET.DETECT.MASKS:   # (the key came later: runs and catalogues without masks keep their identity)
        del c.DETRET.DETECT["MASKS"]
    if c.DETRET.DETECT.ENGINE == "torch":   # (the engine keys came later: a torch detector keeps its identity)
        del c.DETRET.DETECT["ENGINE"]
    if c.DETRET.DETECT.PRECISION != "int8":
        del c.DETRET.DETECT["CALIBRATION_PHOTOS"]
    return c.dump()


@dataclass
class DetectorChoice:
    cfg: CfgNode
    weights: str           # MODEL.WEIGHTS: the file the detector loads
    weights_file: Path     # the same as a local path, an input of the stages that use it


def choose_detector(pcfg: DictConfig, device: str, extra_opts: Sequence[str] = ()) -> DetectorChoice:
    """The pipeline's detector: ``detector.weights`` with ``detector.config_file``, else the run's
    trained one (``<run_dir>/detector/``: its config.yaml and model_final.pth)."""
    opts: List[str] = list(pcfg.detector.opts) + list(extra_opts)
    if pcfg.detector.weights:
        cfg = build_detector_cfg(pcfg.detector.config_file, opts, weights=pcfg.detector.weights, device=str(device))
        check_weights_available(cfg)
        return DetectorChoice(cfg, cfg.MODEL.WEIGHTS, Path(cfg.MODEL.WEIGHTS))
    trained = RunLayout(pcfg.run_dir).detector
    require_built(trained, "the trained detector (detret train-detector)")
    cfg = build_detector_cfg(str(trained / "config.yaml"), opts, weights=str(trained / "model_final.pth"),
                             device=str(device))
    return DetectorChoice(cfg, cfg.MODEL.WEIGHTS, trained / "model_final.pth")
