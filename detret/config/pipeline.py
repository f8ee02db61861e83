"""The pipeline config: dataset roots, detector, retrieval models, run directory.

One YAML file drives every stage. It is found, in order, from ``--config PATH``,
the ``DETRET_CONFIG`` environment variable, ``./detret.yaml``; with none of them
the defaults below apply. Every key can be overridden on the command line with
``--set section.key=value`` (values parsed as YAML), and stage options such as
``detret detect --split shop`` are overrides of the same keys.

The schema is an OmegaConf structured config (OmegaConf is already a dependency
of Detectron2): unknown keys and values of the wrong type are rejected, and
:class:`ConfigError` lists the valid keys of the section concerned.

Relative paths in a config file are taken relative to the directory of that
file, so a run directory and its config can be moved together; relative paths
given on the command line are relative to the current directory.

The detector itself is configured by Detectron2's own yacs config
(``detector.config_file``, plus Detectron2 ``KEY VALUE`` pairs in
``detector.opts``); this file only points at it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional, Sequence

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from ..errors import InputError
from ..registry import import_blocks
from .choices import (
    DEVICE_PATTERN,
    DEVICES,
    TIMM_PREFIX,
    Architecture,
    CropShapeChoice,
    MaskFill,
    Negatives,
    Optimizer,
    Resize,
    Streams,
    check_choice,
)

DEFAULT_CONFIG_NAME = "detret.yaml"
CONFIG_ENV_VAR = "DETRET_CONFIG"


class ConfigError(InputError):
    """A pipeline config that cannot be used; the message says where and why."""


@dataclass
class ModaNetPaths:
    # COCO instances JSON with annotations (the official train file).
    annotations: Optional[str] = None
    # Folder holding the photos named by `file_name`.
    images: Optional[str] = None
    # Share of the annotated images held out for detector evaluation (the paper: 5%).
    holdout_fraction: float = 0.05
    holdout_seed: int = 0


@dataclass
class Street2ShopPaths:
    # Folder with meta/json/{retrieval,train_pairs,test_pairs}_<cat>.json and images/.
    root: Optional[str] = None


@dataclass
class DeepFashion2Paths:
    # Folder with train/, validation/ (each with image/ and annos/).
    root: Optional[str] = None


@dataclass
class DataConfig:
    modanet: ModaNetPaths = field(default_factory=ModaNetPaths)
    street2shop: Street2ShopPaths = field(default_factory=Street2ShopPaths)
    deepfashion2: DeepFashion2Paths = field(default_factory=DeepFashion2Paths)
    # Editable YAML mapping retrieval categories to detector labels; None: the packaged one.
    category_map: Optional[str] = None


@dataclass
class DetectorConfig:
    # Detectron2 yacs config: a path, a file name in the repository's detectron_configs/,
    # or zoo:<Detectron2 model zoo config>. Swapping detectors is pointing here at another file.
    config_file: str = "mask_rcnn_X_101_32x8d_FPN_modanet.yaml"
    # Trained weights (.pth/.pkl); None: the run directory's trained detector.
    weights: Optional[str] = None
    # Detectron2 KEY VALUE overrides, e.g. ["SOLVER.MAX_ITER", "200"].
    opts: List[str] = field(default_factory=list)


@dataclass
class RetrievalModelRef:
    # Name used for the model's column in tables and for its artifact folders.
    name: str = "model"
    # Self-describing checkpoint file (see detret.retrieval); None: the run's trained one.
    checkpoint: Optional[str] = None


@dataclass
class RetrievalTrainConfig:
    # Network (Section 3.2): backbone -> GeM -> L2 -> FC(dim) -> L2.
    architecture: str = "resnet50"   # a torchvision ResNet/ResNeXt, or timm:<model name> (timm:convnext_tiny)
    dim: int = 512
    pretrained: bool = True          # ImageNet weights (torch hub cache or backbone_weights)
    backbone_weights: Optional[str] = None
    image_size: int = 224            # pixels of the longer side (the paper: 800)
    resize: str = "longest"          # longest | square
    pooling: str = "gem"             # a registered pooling (`detret blocks`): gem, the paper's; mac, spoc, rmac
    # box: crops are the boxes' pixels | mask: the detection's Mask R-CNN mask removes the background first
    # (shop photos: their chosen detection's; street photos: the detection best matching the box), filled
    # with white or mean (ImageNet's mean colour); needs `detect` with DETRET.DETECT.MASKS True for the
    # shop photos and the street photos of the training pairs (`detect --split street --subset train`).
    crop: str = "box"
    mask_fill: str = "white"
    # Optimisation.
    epochs: int = 10
    batch_size: int = 16             # queries per step
    optimizer: str = "adam"          # adam | sgd
    lr: float = 1e-5
    weight_decay: float = 1e-6
    lr_decay: float = 0.9            # per epoch (exponential schedule)
    chunk_size: int = 8              # images per recomputation of multistage back-propagation
    seed: int = 0
    val_fraction: float = 0.1        # training products held out for validation mAP
    # Triplet loss (eq. 2).
    margin: float = 0.1
    negatives: str = "offline"       # offline: hard negatives mined each epoch | batch: hardest in the batch
    mine_k: int = 25                 # nearest non-matching shop photos kept per query
    # AP loss (eq. 3-4).
    ap_bins: int = 25
    ap_negatives: int = 4            # mined negatives added per query to the batch's items
    # Batches, a registered sampler: pairs (queries, each with a shop crop) | pk (P products x K photos).
    sampler: str = "pairs"
    pk_products: int = 10            # P (Ibrahim et al.: 10 for lifted and batch-hard, 30 for N-pair, angular)
    pk_photos: int = 6               # K (6, or 2 for N-pair and angular)
    # Streams: shared (one network) | domain (street and shop networks, Gajic & Baldrich's SS, DARN).
    streams: str = "shared"
    # Start from a retrieval run's name or a model.pt (both streams from a shared model); None: backbone weights.
    init_from: Optional[str] = None
    # DARN's attribute heads: weight of their cross-entropy beside the ranking loss; 0: no heads.
    # Reads <street2shop root>/meta/attributes.csv (detret.data.attributes).
    attribute_weight: float = 0.0
    # Classification pre-training over product ids (Gordo et al.), epochs; 0: none.
    classifier_epochs: int = 0


@dataclass
class RetrievalConfig:
    # One model, or several whose descriptors are concatenated and L2-normalised.
    models: List[RetrievalModelRef] = field(default_factory=list)
    train: RetrievalTrainConfig = field(default_factory=RetrievalTrainConfig)


@dataclass
class PipelineConfig:
    # Modules imported when the config is read, each registering its building blocks (detret.registry):
    # poolings, losses, samplers, re-rankings of another package, named like any built-in one.
    imports: List[str] = field(default_factory=list)
    # Every stage writes into <run_dir>/<stage>/.
    run_dir: str = "runs/default"
    # torch device string: "cpu", "cuda", "cuda:1", or "auto" (CUDA when present).
    device: str = "auto"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)


# Keys whose value is one of a fixed set, checked when the config is read.
CHOICE_KEYS = {
    "retrieval.train.resize": Resize,
    "retrieval.train.optimizer": Optimizer,
    "retrieval.train.negatives": Negatives,
    "retrieval.train.streams": Streams,
    "retrieval.train.crop": CropShapeChoice,
    "retrieval.train.mask_fill": MaskFill,
}

# Keys holding file or folder paths, resolved relative to the config file.
PATH_KEYS: Sequence[str] = (
    "run_dir",
    "data.modanet.annotations",
    "data.modanet.images",
    "data.street2shop.root",
    "data.deepfashion2.root",
    "data.category_map",
    "detector.config_file",
    "detector.weights",
    "retrieval.train.backbone_weights",
)


def valid_keys(node: Any = None, prefix: str = "") -> List[str]:
    """Dotted names of every leaf key of the schema (or of a section of it)."""
    node = OmegaConf.structured(PipelineConfig) if node is None else node
    keys: List[str] = []
    for name in node.keys():
        value = node._get_node(name)
        dotted = f"{prefix}{name}"
        if isinstance(value, DictConfig):
            keys.extend(valid_keys(value, dotted + "."))
        else:
            keys.append(dotted)
    return keys


def _section_keys(dotted: str) -> List[str]:
    """Valid keys of the deepest existing section on the way to `dotted`."""
    schema = OmegaConf.structured(PipelineConfig)
    parts = dotted.split(".")
    node, prefix = schema, ""
    for part in parts[:-1]:
        child = node._get_node(part) if part in node else None
        if not isinstance(child, DictConfig):
            break
        node, prefix = child, prefix + part + "."
    return valid_keys(node, prefix)


def _explain(exc: OmegaConfBaseException, source: str) -> ConfigError:
    key = getattr(exc, "full_key", None) or ""
    if isinstance(exc, (ConfigKeyError, ConfigAttributeError)):
        listing = ", ".join(_section_keys(key) if key else valid_keys())
        return ConfigError(f"{source}: unknown key '{key}'. Valid keys here: {listing}")
    msg = str(exc).splitlines()[0]
    return ConfigError(f"{source}: bad value for '{key}': {msg}")


def _is_config_name(key: str, value: str) -> bool:
    """A bare detector config name ("x.yaml", found in detectron_configs/) or a zoo:<path>."""
    return key == "detector.config_file" and (value.startswith("zoo:") or os.sep not in value)


def _resolve_paths(raw: DictConfig, base_dir: Path) -> None:
    for key in PATH_KEYS:
        value = OmegaConf.select(raw, key, default=None)
        if isinstance(value, str) and _is_config_name(key, value) and not (base_dir / value).is_file():
            continue
        if isinstance(value, str) and value and not os.path.isabs(os.path.expanduser(value)):
            OmegaConf.update(raw, key, str((base_dir / value).resolve()), merge=False)


def find_config_file(explicit: Optional[Path]) -> Optional[Path]:
    """The config file to use: --config, then $DETRET_CONFIG, then ./detret.yaml."""
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"{explicit}: config file not found")
        return explicit
    env = os.environ.get(CONFIG_ENV_VAR)
    if env:
        path = Path(env)
        if not path.is_file():
            raise ConfigError(f"{path}: config file named by ${CONFIG_ENV_VAR} not found")
        return path
    local = Path.cwd() / DEFAULT_CONFIG_NAME
    return local if local.is_file() else None


def parse_overrides(overrides: Sequence[str]) -> DictConfig:
    """`section.key=value` strings (values parsed as YAML) into a config tree."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value. Valid keys: {', '.join(valid_keys())}")
    try:
        return OmegaConf.from_dotlist(list(overrides))
    except OmegaConfBaseException as exc:
        raise ConfigError(f"command-line overrides: {exc}") from exc


def load_pipeline_config(
    path: Optional[Path] = None,
    overrides: Sequence[str] = (),
    cwd: Optional[Path] = None,
) -> DictConfig:
    """Defaults <- config file <- overrides, validated against the schema.

    Returns a read-only DictConfig with the layout of :class:`PipelineConfig`
    and absolute paths.
    """
    cfg = OmegaConf.structured(PipelineConfig)
    cwd = Path.cwd() if cwd is None else cwd
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of keys at the top level, got {type(loaded).__name__}")
        try:
            file_cfg = OmegaConf.create(loaded)
            _resolve_paths(file_cfg, Path(path).resolve().parent)
            cfg = OmegaConf.merge(cfg, file_cfg)
        except OmegaConfBaseException as exc:
            raise _explain(exc, str(path)) from exc
    if overrides:
        cli_cfg = parse_overrides(overrides)
        _resolve_paths(cli_cfg, cwd)
        try:
            cfg = OmegaConf.merge(cfg, cli_cfg)
        except OmegaConfBaseException as exc:
            raise _explain(exc, "command line") from exc
    _resolve_paths(cfg, cwd)  # defaults that are still relative
    check_choices(cfg, source=str(path) if path is not None else "defaults")
    import_blocks(list(cfg.imports), source=str(path) if path is not None else "the command line")
    OmegaConf.set_readonly(cfg, True)
    return cfg


def check_choices(cfg: DictConfig, source: str) -> None:
    """ConfigError naming the key, the value and the valid values, for the first bad choice."""
    origin = f"{source} and the command line" if source != "defaults" else "the command line"
    for key, choice in CHOICE_KEYS.items():
        check_choice(OmegaConf.select(cfg, key), choice, f"{origin}: {key}", ConfigError)
    if not DEVICE_PATTERN.match(cfg.device):
        raise ConfigError(f"{origin}: device {cfg.device!r} is not one of {DEVICES}")
    architecture = cfg.retrieval.train.architecture
    if not (architecture.startswith(TIMM_PREFIX) and len(architecture) > len(TIMM_PREFIX)):
        check_choice(architecture, Architecture, f"{origin}: retrieval.train.architecture (or timm:<model name>)",
                     ConfigError)


def config_to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)
