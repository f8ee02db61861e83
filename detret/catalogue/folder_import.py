"""A folder of photos as a product list (``catalogue add CAT PHOTOS_DIR``), in one of two layouts:

- by category: ``<category>/<product>/<photo>`` (or ``<category>/<photo>``: each photo its own product, named
  by the file's stem); every top-level folder is one of the catalogue's categories;
- flat: ``<photo>`` (each photo its own product) or ``<product>/<photo>``, no top-level folder named as a
  category: the catalogue's detector names each photo's category (its most confident garment above the
  objectness threshold, the first category whose labels hold that garment's label; a photo where it finds
  none is listed as unusable with that reason).

Photos are the files with an image suffix (``PHOTO_SUFFIXES``); hidden files and folders are left out, and
so are symbolic links to folders (a folder given to ``add`` is read, never walked out of). Lines are numbered
in sorted path order, so a report's ``line`` is stable; ``source`` is the path relative to the folder.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..data.images import PhotoError, read_rgb
from ..detect.crops import accepted_detections
from ..errors import InputError, MissingFileError
from .products_csv import ProductLine, shown

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
MAX_PRODUCT_CHARS = 200


def _visible(entries) -> List[Path]:
    return sorted(p for p in entries if not p.name.startswith("."))


def _photos_in(folder: Path) -> List[Path]:
    return [p for p in _visible(folder.iterdir()) if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES]


def _folders_in(folder: Path) -> List[Path]:
    return [p for p in _visible(folder.iterdir()) if p.is_dir() and not p.is_symlink()]


def _product(name: str, where: Path) -> str:
    if not name.strip() or len(name) > MAX_PRODUCT_CHARS or not name.isprintable():
        raise InputError(f"{where}: {shown(name)} cannot be a product id (printable, 1-{MAX_PRODUCT_CHARS} "
                         "characters)")
    return name


def _items(root: Path, folder: Path) -> List[Tuple[Path, str]]:
    """(photo, product) of a folder holding photos (each its own product) and product folders."""
    out = [(p, _product(p.stem, p)) for p in _photos_in(folder)]
    for product_dir in _folders_in(folder):
        deeper = _folders_in(product_dir)
        if deeper:
            raise InputError(f"{deeper[0]}: a folder inside a product's folder; photos are at most "
                             f"CATEGORY/PRODUCT/PHOTO (or PRODUCT/PHOTO in a flat folder) deep")
        out += [(p, _product(product_dir.name, product_dir)) for p in _photos_in(product_dir)]
    return out


def folder_layout(root: Path, categories: Sequence[str]) -> str:
    """"by-category" or "flat" (see the module docstring); a folder mixing the two is refused."""
    folders = [p.name for p in _folders_in(root)]
    named = [f for f in folders if f in categories]
    if named and (len(named) != len(folders) or _photos_in(root)):
        others = [f for f in folders if f not in categories] + [p.name for p in _photos_in(root)]
        raise InputError(f"{root}: mixes category folders ({', '.join(named[:5])}) with other entries "
                         f"({', '.join(map(shown, others[:5]))}); either every top-level folder is a category "
                         f"({', '.join(categories)}), or none is and the detector names the categories")
    return "by-category" if named else "flat"


def read_photo_folder(root: Path, categories: Sequence[str], name_category=None) -> Tuple[List[ProductLine],
                                                                                          List[Dict]]:
    """(product lines, photos left out with their reason) of the folder ``root``. ``name_category(rgb) ->
    category or None`` names a flat folder's categories (the catalogue's detector); without it a flat folder
    is refused."""
    root = Path(root)
    if not root.is_dir():
        raise MissingFileError(f"{root}: no such folder of photos")
    layout = folder_layout(root, categories)
    if layout == "by-category":
        found = [(p, product, c.name) for c in _folders_in(root) for p, product in _items(root, c)]
    else:
        if name_category is None:
            raise InputError(f"{root}: no folder is named after a category ({', '.join(categories)}) and the "
                             "catalogue has no detector to name them; sort the photos into category folders")
        found = [(p, product, None) for p, product in _items(root, root)]
    if not found:
        raise InputError(f"{root}: no photos ({', '.join(sorted(PHOTO_SUFFIXES))}) in it or its sub-folders")
    return _lines(root, found, name_category)


def _lines(root: Path, found, name_category) -> Tuple[List[ProductLine], List[Dict]]:
    lines, left_out = [], []
    for n, (photo, product, category) in enumerate(found, start=1):
        source = photo.relative_to(root).as_posix()
        if category is None:
            category, reason = name_category(photo)
            if category is None:
                left_out.append({"line": n, "photo": source, "reason": reason})
                continue
        lines.append(ProductLine(n, photo.resolve(), source, product, category, None, None, None))
    return lines, left_out


def detector_namer(models, categories: Sequence[str]):
    """``name_category(photo path) -> (category or None, reason)`` with the catalogue's detector (``BoundModels``):
    the most confident garment above the objectness threshold, its label's first category."""
    thresh = models.card.crop["objectness_thresh"]

    def name(path: Path) -> Tuple[Optional[str], str]:
        try:
            rgb = read_rgb(path)
        except PhotoError as exc:
            return None, exc.reason
        detections = models.detect([rgb])[0]
        ranked = sorted(accepted_detections(detections, (rgb.shape[1], rgb.shape[0]), thresh),
                        key=lambda a: (-a[1].score, a[0]))
        for _, det, _ in ranked:
            named = [c for c in models.categories_of(det.label) if c in categories]
            if named:
                return named[0], ""
        return None, f"the detector found no garment (objectness > {thresh}) to name its category"

    return name
