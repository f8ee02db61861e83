"""Every fixed-choice setting of detret, as one ``StrEnum`` each.

The building blocks a user may add to (poolings, losses, samplers, re-rankings) are registries instead
(:mod:`detret.registry`), checked where they are read.

The pipeline config checks its choice keys against these when it is read
(:data:`detret.config.pipeline.CHOICE_KEYS`), and the command line declares its choice
options with them, so a typo (``negatives: ofline``) is an error naming the valid values
instead of silently selecting another branch. Members compare equal to their strings
(``Negatives.OFFLINE == "offline"``), so stages read plain strings either way.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Optional, Tuple, Type

from ..errors import InputError


class Negatives(StrEnum):
    """Triplet negatives: mined offline each epoch among the nearest shop crops, or the batch's hardest."""
    OFFLINE = "offline"
    BATCH = "batch"


class Resize(StrEnum):
    """Network input: longer side to image_size (aspect kept), or image_size x image_size."""
    LONGEST = "longest"
    SQUARE = "square"


class Optimizer(StrEnum):
    ADAM = "adam"
    SGD = "sgd"


TIMM_PREFIX = "timm:"  # retrieval.train.architecture: timm:<model name> is any timm backbone
# Foundation descriptors without training: LIBRARY:NAME (detret/retrieval/foundation)
FOUNDATION_LIBRARIES = ("open_clip", "timm", "hf")


class Architecture(StrEnum):
    """torchvision backbones of the retrieval network (``detret.retrieval.backbones.ARCHITECTURES``); the
    architecture may also be ``timm:<model name>``."""
    RESNET18 = "resnet18"
    RESNET34 = "resnet34"
    RESNET50 = "resnet50"
    RESNET101 = "resnet101"
    RESNEXT50_32X4D = "resnext50_32x4d"
    RESNEXT101_32X8D = "resnext101_32x8d"


class Streams(StrEnum):
    """One network for street and shop photos, or one per domain (Gajic & Baldrich's "SS", DARN)."""
    SHARED = "shared"
    DOMAIN = "domain"


class Protocol(StrEnum):
    """Which shop photos a street query is ranked against: its category's (Kiapour et al., the paper's
    Table 1) or all of them (Morelli et al.'s Recall@K)."""
    CATEGORY = "category"
    ALL = "all"


class WhitenMethod(StrEnum):
    """`detret whiten`: learned from matching street/shop pairs (Radenovic et al.'s Lw), or PCA whitening."""
    LW = "lw"
    PCA = "pca"


class ShopCrops(StrEnum):
    """Shop photos as the detector cropped them (the paper's "DB C"), or whole ("DB F")."""
    DETECTED = "detected"
    FULL = "full"


class Precision(StrEnum):
    """Inference precision: fp32; bf16 autocast (the torch engine: channels-last, faster with AMX and on GPUs);
    int8 (the onnxruntime engine: static quantization calibrated on gallery photos)."""
    FP32 = "fp32"
    BF16 = "bf16"
    INT8 = "int8"


class Engine(StrEnum):
    """What runs a model at inference: torch (the models as trained), or ONNX Runtime (the exported graph)."""
    TORCH = "torch"
    ONNXRUNTIME = "onnxruntime"


ENGINE_PRECISIONS = {Engine.TORCH.value: ("fp32", "bf16"), Engine.ONNXRUNTIME.value: ("fp32", "int8")}


@dataclass(frozen=True)
class EngineChoice:
    """What runs a catalogue's (or a query's) models: one engine, the descriptor models at ``precision`` and the
    detector at ``detector_precision`` (default: the same)."""
    engine: str = "torch"
    precision: str = "fp32"
    detector_precision: Optional[str] = None

    def __post_init__(self) -> None:
        check_engine(self.engine, self.precision, "the descriptor models'")
        check_engine(self.engine, self.detector, "the detector's")

    @property
    def detector(self) -> str:
        return self.detector_precision or self.precision


def check_engine(engine: str, precision: str, where: str) -> None:
    """Refuse an engine, or a precision the engine does not run (bf16 on onnxruntime, int8 on torch)."""
    check_choice(engine, Engine, f"{where} engine")
    check_choice(precision, Precision, f"{where} precision")
    if precision not in ENGINE_PRECISIONS[engine]:
        raise InputError(f"{where}: the {engine} engine runs {' or '.join(ENGINE_PRECISIONS[engine])}, not "
                         f"{precision}" + ("; int8 needs --engine onnxruntime" if precision == "int8" else ""))


class DetectorOptimizer(StrEnum):
    """The detector's optimizer (DETRET.SOLVER.OPTIMIZER): Detectron2's SGD with momentum, or AdamW with the
    same parameter groups, learning rate schedule and weight decay."""
    SGD = "SGD"
    ADAMW = "AdamW"


class Split(StrEnum):
    """Photos of Street2Shop to detect: the shop gallery, or the street queries."""
    SHOP = "shop"
    STREET = "street"


class Subset(StrEnum):
    """Street2Shop pairs: the test queries or the training queries."""
    TEST = "test"
    TRAIN = "train"


class CropShapeChoice(StrEnum):
    """A crop's pixels: the box's, or the detection's mask cutting the garment out first (detect/masks.py)."""
    BOX = "box"
    MASK = "mask"


class MaskFill(StrEnum):
    """What replaces the background of a mask crop: white, or ImageNet's mean colour (0 once normalised)."""
    WHITE = "white"
    MEAN = "mean"


class CropPolicy(StrEnum):
    """The paper's category-matched crop, the best detection of any label, or the whole photo."""
    CATEGORY = "category"
    TOP1 = "top1"
    FULL = "full"


class Dataset(StrEnum):
    MODANET = "modanet"
    STREET2SHOP = "street2shop"
    DEEPFASHION2 = "deepfashion2"


class DeepFashion2Split(StrEnum):
    TRAIN = "train"
    VALIDATION = "validation"
    TEST = "test"


# The device setting is a pattern rather than a fixed set: "auto", "cpu", "mps", "cuda" or "cuda:N".
DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
DEVICES = "auto, cpu, mps, cuda, cuda:N"


def values(choice: Type[StrEnum]) -> str:
    """"a, b, c": the valid values of a choice, for error messages."""
    return ", ".join(member.value for member in choice)


def check_choice(value: str, choice: Type[StrEnum], what: str, error: Type[InputError] = InputError) -> str:
    """`value` if it is one of `choice`'s values, else `error` naming `what`, the value and the valid ones:
    "``<what> 'ofline' is not one of offline, batch``"."""
    if value not in {member.value for member in choice}:
        raise error(f"{what} {value!r} is not one of {values(choice)}")
    return str(value)


def check_foundation_name(text: str, where: str = "--descriptor") -> Tuple[str, str]:
    """(library, name) of a foundation model named ``LIBRARY:NAME``; an InputError naming ``where`` else."""
    library, sep, name = str(text).partition(":")
    if not sep or library not in FOUNDATION_LIBRARIES or not name.strip():
        raise InputError(f"{where} {text!r}: expected LIBRARY:NAME with LIBRARY one of "
                         f"{', '.join(FOUNDATION_LIBRARIES)} (e.g. open_clip:hf-hub:Marqo/marqo-fashionSigLIP, "
                         "timm:vit_small_patch14_dinov2.lvd142m, hf:facebook/dinov2-small)")
    return library, name.strip()
