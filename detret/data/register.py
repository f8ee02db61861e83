"""Registration of detret's datasets in Detectron2's catalogs, in one explicit call.

Nothing is registered as a side effect of an import: the CLI (and tests) call
:func:`register_datasets` with the pipeline config. Names registered:

- ``modanet_train``: ModaNet train minus the held-out images;
- ``modanet_holdout``: the held-out share (``data.modanet.holdout_fraction``,
  seeded by ``data.modanet.holdout_seed``; the paper: 5%), drawn once and saved in
  ``<run_dir>/data/modanet_split.json``;
- ``modanet_all``: every annotated image.

Metadata: ``thing_classes`` (the 13 ModaNet labels), ``evaluator_type="coco"``
(COCOEvaluator converts the registered dicts, clipped boxes included, to COCO
GT itself; ``json_file`` is deliberately not set, because the official file
holds the unclipped boxes and the full image list).
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Dict, List

from omegaconf import DictConfig

from ..errors import InputError, UnknownNameError
from ..runs.layout import RunLayout
from .categories import load_categories
from .modanet import load_modanet, load_or_create_split

MODANET_NAMES = ("modanet_train", "modanet_holdout", "modanet_all")


def _load_subset(json_path: str, image_root: str, split_path: str, fraction: float, seed: int, subset: str,
                 box_source: str) -> List[Dict]:
    ids = None
    if subset != "all":
        ids = load_or_create_split(Path(split_path), Path(json_path), fraction, seed)[subset]
    dicts, _ = load_modanet(Path(json_path), Path(image_root), box_source=box_source, image_ids=ids)
    return dicts


def register_datasets(cfg: DictConfig, *, box_source: str = "annotation") -> List[str]:
    """Register the datasets the pipeline config names; returns the registered names.

    Idempotent: a name registered before (by an earlier call) is replaced.
    """
    from detectron2.data import DatasetCatalog, MetadataCatalog

    names: List[str] = []
    modanet = cfg.data.modanet
    if modanet.annotations:
        if not modanet.images:
            raise InputError("data.modanet.annotations is set but data.modanet.images is not")
        labels = list(load_categories(cfg.data.category_map).modanet)
        for name in MODANET_NAMES:
            subset = name.split("_", 1)[1]
            if name in DatasetCatalog.list():
                DatasetCatalog.remove(name)
                MetadataCatalog.remove(name)
            DatasetCatalog.register(name, partial(
                _load_subset, str(modanet.annotations), str(modanet.images),
                str(RunLayout(cfg.run_dir).modanet_split), float(modanet.holdout_fraction),
                int(modanet.holdout_seed), subset, box_source))
            MetadataCatalog.get(name).set(thing_classes=labels, evaluator_type="coco",
                                          image_root=str(modanet.images))
            names.append(name)
    return names


def dataset_dicts(name: str) -> List[Dict]:
    """The records of a registered dataset; an unknown name lists the registered ones."""
    from detectron2.data import DatasetCatalog

    registered = DatasetCatalog.list()
    if name not in registered:
        raise UnknownNameError(f"dataset {name!r} is not registered; registered: {', '.join(sorted(registered)) or 'none'}. "
                       "Set data.modanet.annotations and data.modanet.images in the pipeline config")
    return DatasetCatalog.get(name)
