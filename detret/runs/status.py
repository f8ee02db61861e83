"""The state of every stage of a run, for `detret status`.

Stages are found by their manifests: every ``manifest.json`` up to two levels
below the run directory, plus the datasets the config reads when detret made
them (a synthetic dataset carries a manifest at its top folder).
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from omegaconf import DictConfig

from .layout import RunLayout
from .manifest import MANIFEST_NAME
from .stage import StageStatus, stage_status

_DATASET_KEYS = ("data.modanet.annotations", "data.modanet.images", "data.street2shop.root",
                 "data.deepfashion2.root")


def _dataset_manifest_dir(path: Optional[str]) -> Optional[Path]:
    if not path:
        return None
    p = Path(path)
    for candidate in (p, *list(p.parents)[:3]):
        if (candidate / MANIFEST_NAME).is_file():
            return candidate
    return None


def run_status(cfg: DictConfig) -> List[StageStatus]:
    from omegaconf import OmegaConf

    seen = set()
    rows: List[StageStatus] = []
    for key in _DATASET_KEYS:
        folder = _dataset_manifest_dir(OmegaConf.select(cfg, key))
        if folder is not None and folder.resolve() not in seen:
            seen.add(folder.resolve())
            rows.append(stage_status(folder))
    run_dir = Path(cfg.run_dir)
    for folder in RunLayout(run_dir).stage_folders():
        if folder.resolve() not in seen:
            seen.add(folder.resolve())
            rows.append(stage_status(folder))
    if not rows:
        rows.append(StageStatus("(none)", run_dir, "missing", ["no stage has run in this run directory yet"]))
    return rows
