"""Category vocabularies and the retrieval-category -> detector-label maps.

They are data (``detret/resources/categories.yaml``), so a user can edit a copy
and point ``data.category_map`` at it; this module only loads and checks them.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import yaml

from ..errors import InputError, MissingFileError, UnknownNameError

_REQUIRED_KEYS = ("modanet", "street2shop", "deepfashion2", "street2shop_to_modanet", "deepfashion2_to_modanet")


@dataclass(frozen=True)
class Categories:
    modanet: Tuple[str, ...]       # detector labels; class index i <-> ModaNet category id i + 1
    street2shop: Tuple[str, ...]
    deepfashion2: Tuple[str, ...]
    street2shop_to_modanet: Dict[str, Tuple[str, ...]]
    deepfashion2_to_modanet: Dict[str, Tuple[str, ...]]
    source: str

    def modanet_index(self, label: str) -> int:
        try:
            return self.modanet.index(label)
        except ValueError:
            raise UnknownNameError(f"unknown ModaNet label {label!r}; known: {', '.join(self.modanet)}") from None

    def detector_labels_for(self, category: str, dataset: str = "street2shop") -> Tuple[str, ...]:
        """Detector labels whose detections may crop a photo of this retrieval category."""
        table = self.street2shop_to_modanet if dataset == "street2shop" else self.deepfashion2_to_modanet
        if category not in table:
            raise UnknownNameError(f"unknown {dataset} category {category!r} in {self.source}; "
                                   f"known: {', '.join(table)}")
        return table[category]


def _check_map(name: str, table: dict, keys: List[str], labels: List[str], source: str) -> Dict[str, Tuple[str, ...]]:
    if not isinstance(table, dict):
        raise InputError(f"{source}: '{name}' must be a mapping of category -> list of ModaNet labels")
    missing = [k for k in keys if k not in table]
    extra = [k for k in table if k not in keys]
    if missing or extra:
        raise InputError(f"{source}: '{name}' must map exactly the categories {keys}; missing {missing}, unknown {extra}")
    out = {}
    for cat, targets in table.items():
        if not isinstance(targets, list) or not targets:
            raise InputError(f"{source}: '{name}.{cat}' must be a non-empty list of ModaNet labels")
        unknown = [t for t in targets if t not in labels]
        if unknown:
            raise InputError(f"{source}: '{name}.{cat}' names unknown ModaNet labels {unknown}; known: {labels}")
        out[cat] = tuple(targets)
    return out


def load_categories(path: Optional[Path] = None) -> Categories:
    """Load and validate a categories file (default: the packaged one)."""
    if path is None:
        text = resources.files("detret.resources").joinpath("categories.yaml").read_text()
        source = "detret/resources/categories.yaml"
    else:
        path = Path(path)
        if not path.is_file():
            raise MissingFileError(f"{path}: category map file not found")
        text, source = path.read_text(), str(path)
    raw = yaml.safe_load(text)
    if not isinstance(raw, dict) or any(k not in raw for k in _REQUIRED_KEYS):
        raise InputError(f"{source}: expected the keys {list(_REQUIRED_KEYS)}")
    modanet = [str(x) for x in raw["modanet"]]
    s2s = [str(x) for x in raw["street2shop"]]
    df2 = [str(x) for x in raw["deepfashion2"]]
    return Categories(
        modanet=tuple(modanet),
        street2shop=tuple(s2s),
        deepfashion2=tuple(df2),
        street2shop_to_modanet=_check_map("street2shop_to_modanet", raw["street2shop_to_modanet"], s2s, modanet, source),
        deepfashion2_to_modanet=_check_map("deepfashion2_to_modanet", raw["deepfashion2_to_modanet"], df2, modanet, source),
        source=source,
    )
