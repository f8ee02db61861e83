"""``catalogue remove``: a product's photos, or one photo, out of the catalogue in one atomic change."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

from ..errors import InputError, UnknownNameError
from ..runs.manifest import sha256_file
from . import db
from .changes import remove
from .compact import maintain
from .store import Catalogue


def remove_from(cat: Catalogue, *, product: Optional[str] = None, photo: Optional[str] = None) -> Dict:
    """Remove every photo of ``product``, or the photo ``photo`` (a file: by its content, for every product
    it shows; else the path as the product list wrote it). The caller holds the writer's lock."""
    if (product is None) == (photo is None):
        raise InputError("give exactly one of --product and --photo")
    if product is not None:
        column, value, what = "product", product, f"product {product!r}"
    elif Path(photo).is_file():
        column, value, what = "sha256", sha256_file(Path(photo)), f"photo {photo} (by its content)"
    else:
        column, value, what = "source", photo, f"photo {photo!r}"
    before = db.count_present_matching(cat.conn, column, [value])
    change_id = remove(cat.applier, column, [value])
    if change_id is None and cat.reconciled:
        return {"removed_photos": 0, "products_touched": 0, "change_id": None,
                "note": f"finished {len(cat.reconciled)} interrupted change(s); nothing else to remove"}
    if change_id is None:
        raise UnknownNameError(f"{cat.root}: no {what} in the catalogue")
    categories = db.change_of(cat.conn, change_id)[2]["photo_ids"]
    return {"removed_photos": before[0], "products_touched": before[1], "change_id": change_id,
            "maintenance": maintain(cat.applier, categories)}


def remove_products(root: Path, *, product: Optional[str] = None, photo: Optional[str] = None,
                    holder: str = "detret catalogue remove") -> Dict:
    with Catalogue.writing(root, holder) as cat:
        return remove_from(cat, product=product, photo=photo)
