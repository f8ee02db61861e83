"""Product attributes (DARN's attribute heads): a per-product CSV beside Street2Shop's annotations.

File ``<street2shop root>/meta/attributes.csv``, UTF-8, one header line then one line per product::

    category,product,colour,pattern,trim,badge
    tops,12,#2850aa,stripes,thin,circle
    bags,40,#c81e28,plain,,none

- ``category``, ``product``: the product as Street2Shop names it (category, product id: ids are per category);
- every further column is one attribute, its cells the product's value (any text); an empty cell is an
  unknown value, left out of that attribute's loss.

The synthetic generator writes the attributes it draws a product from (base colour, pattern, trim
thickness, badge); Exact Street2Shop has none: train with ``attribute_weight: 0``.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Tuple

from ..errors import InputError
from ..runs.atomic import atomic_write_text

ATTRIBUTES_FILE = Path("meta") / "attributes.csv"
KEY_COLUMNS = ("category", "product")

Product = Tuple[str, int]


@dataclass(frozen=True)
class ProductAttributes:
    """``values``: attribute -> its values (sorted; a value's class is its index); ``labels``: product ->
    attribute -> class (unknown values absent)."""

    values: Dict[str, List[str]]
    labels: Dict[Product, Dict[str, int]]

    def classes(self, product: Product) -> List[int]:
        """The product's class of every attribute in ``values`` order (-1: unknown)."""
        known = self.labels.get(product, {})
        return [known.get(name, -1) for name in self.values]


def attributes_path(street2shop_root: Path) -> Path:
    return Path(street2shop_root) / ATTRIBUTES_FILE


def load_attributes(path: Path) -> ProductAttributes:
    """The file at `path`; an InputError naming file and line for a malformed one."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: attribute file not found (a dataset without attributes trains with "
                         f"retrieval.train.attribute_weight: 0)")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or tuple(header[:2]) != KEY_COLUMNS or len(header) < 3:
            raise InputError(f"{path}:1: the header must be category,product,<attribute>,... (got {header})")
        names = header[2:]
        raw: Dict[Product, Dict[str, str]] = {}
        for line, row in enumerate(reader, start=2):
            if len(row) != len(header):
                raise InputError(f"{path}:{line}: {len(row)} cells, the header has {len(header)}")
            try:
                product = (row[0], int(row[1]))
            except ValueError:
                raise InputError(f"{path}:{line}: product {row[1]!r} is not an integer id") from None
            if product in raw:
                raise InputError(f"{path}:{line}: product {product} listed twice")
            raw[product] = {n: v for n, v in zip(names, row[2:]) if v != ""}
    values = {n: sorted({v[n] for v in raw.values() if n in v}) for n in names}
    labels = {p: {n: values[n].index(v) for n, v in vals.items()} for p, vals in raw.items()}
    return ProductAttributes(values, labels)


def write_attributes(path: Path, rows: Mapping[Product, Mapping[str, str]], names: List[str]) -> None:
    """Write the file format above (products sorted), atomically."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*KEY_COLUMNS, *names])
    for (category, product), vals in sorted(rows.items()):
        writer.writerow([category, product, *(vals.get(n, "") for n in names)])
    atomic_write_text(Path(path), out.getvalue())
