"""``catalogue create`` (optionally from a run's own gallery) and ``catalogue reindex`` (another model).

Both build the new catalogue in a hidden folder beside the target and move it into place at the
end, so a kill leaves no half-built catalogue: ``create`` renames it (the target must not exist),
``reindex`` exchanges it with the old one in one ``renameat2(RENAME_EXCHANGE)`` (Linux; elsewhere two
renames) while it holds the old one's writer lock.
"""
from __future__ import annotations

import ctypes
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from ..data.images import photo_size
from ..data.street2shop import PHOTO_NAME
from ..detect.crops import GIVEN_BOX
from ..detect.masks import BOX, CropShape
from ..embed.artifact import read_descriptors
from ..errors import InputError
from ..runs.atomic import fsync_dir
from ..runs.layout import RunLayout
from ..runs.manifest import sha256_file
from . import db
from .add import add_lines, store_photo
from .binding import BoundModels, ModelCard, bind_foundation, bind_run
from .changes import NewPhoto, begin_add, finish_add_or_roll_back
from .compact import maintain
from .layout import CatalogueLayout
from .products_csv import ProductLine
from .store import Catalogue
from .indexing import check_setting
from .milvus import VectorsSpec, vectors_meta
from .milvus import check_index as check_milvus_index

logger = logging.getLogger(__name__)


def staging_folder(root: Path, what: str) -> Path:
    tmp = root.parent / f".{root.name}.{what}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def _new_catalogue(pcfg, folder: Path, run: str, index_factory: str, vectors: VectorsSpec,
                   foundation: Optional["FoundationChoice"] = None) -> Catalogue:
    if foundation is not None:
        card = bind_foundation(pcfg, foundation.descriptor, foundation.weights, folder, index_factory,
                               with_detector=foundation.detector, crop=foundation.crop)
    else:
        card = bind_run(pcfg, run, folder, index_factory)
    return _open_new(folder, card, vectors)


@dataclass(frozen=True)
class FoundationChoice:
    """``catalogue create --descriptor SPEC [--weights PATH] [--no-detector] [--crop box|mask]``: a foundation
    model instead of a descriptor run; shop photos cropped by the pipeline's detector (box or mask crops), or
    whole (no detector)."""

    descriptor: str
    weights: Optional[Path] = None
    detector: bool = True
    crop: CropShape = BOX

    def __post_init__(self) -> None:
        if self.crop.shape == "mask" and not self.detector:
            raise InputError("--crop mask cuts the garment out by the detector's mask: it needs the detector "
                             "(drop --no-detector)")


def _open_new(folder: Path, card: ModelCard, vectors: VectorsSpec) -> Catalogue:
    """The database of a catalogue being built in ``folder``, and its Milvus collection when its vectors go
    there (a relative Milvus Lite path is inside the folder, and moves with it)."""
    if vectors.is_milvus:
        check_milvus_index(card.index_factory)
    else:
        check_setting(card.index_factory, card.dim)  # refuse an unusable setting before any photo is read
    conn = db.connect(CatalogueLayout(folder).db, create=True)
    db.set_meta(conn, {"schema_version": str(db.SCHEMA_VERSION), "identity": card.identity, "dim": str(card.dim),
                       **vectors_meta(vectors, folder, card.dim, card.index_factory)})
    return Catalogue(folder, conn, card)


def abandon_new(cat: Optional[Catalogue], folder: Path) -> None:
    """A catalogue that never came to be: its folder deleted, and its collection dropped where it is open."""
    if cat is not None and not cat.closed:
        try:
            if cat.milvus is not None:
                cat.milvus.drop()
        except Exception:  # noqa: BLE001 -- the error that abandoned it is the one to report
            logger.exception("%s: could not drop its Milvus collection", folder)
        cat.close()
    shutil.rmtree(folder, ignore_errors=True)


def create_catalogue(pcfg, root: Path, run: Optional[str], *, index_factory: str = "Flat",
                     import_gallery: bool = False, vectors: str = "faiss",
                     foundation: Optional[FoundationChoice] = None) -> Dict:
    """A new catalogue at ``root`` bound to descriptor run ``run`` (or to a ``foundation`` model, without
    training), its vectors in segment files or on Milvus (``vectors``, ``milvus.py``); with
    ``import_gallery``, holding that run's gallery with the descriptors ``embed`` computed (nothing
    recomputed)."""
    root = Path(root)
    spec = VectorsSpec.parse(vectors)
    if (run is None) == (foundation is None):
        raise InputError("catalogue create: give --run NAME (a descriptor run) or --descriptor LIBRARY:NAME (a "
                         "foundation model), one of them")
    if import_gallery and run is None:
        raise InputError("--import-gallery takes a descriptor run's gallery: it needs --run")
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise InputError(f"{root}: already exists; `detret catalogue reindex {root} --run NAME` binds a "
                         "catalogue to another run")
    tmp = staging_folder(root, "creating")
    cat = None
    try:
        cat = _new_catalogue(pcfg, tmp, run, index_factory, spec, foundation)
        imported = _import_gallery(cat, pcfg, run) if import_gallery else 0
        cat.close()   # (an embedded Milvus Lite folder inside it is released before it moves)
        if root.is_dir():
            root.rmdir()
        os.rename(tmp, root)
        fsync_dir(root.parent)  # the rename survives a power cut
    except BaseException:
        abandon_new(cat, tmp)
        raise
    return {"catalogue": str(root), "run": cat.card.run, "identity": cat.card.identity, "dim": cat.card.dim,
            "index_factory": index_factory, "vectors": str(spec), "imported_photos": imported}


def _import_gallery(cat: Catalogue, pcfg, run: str) -> int:
    """The run's gallery rows as catalogue photos, one per (photo, product), with their descriptors."""
    descriptors, rows = read_descriptors(RunLayout(pcfg.run_dir).embed(run), "gallery")
    images = Path(pcfg.data.street2shop.root) / "images"
    photos: List[NewPhoto] = []
    take: List[int] = []
    for i, r in enumerate(rows):
        path = images / PHOTO_NAME.format(photo_id=r.photo_id)
        sha = sha256_file(path)
        width, height = photo_size(path)
        stored = store_photo(cat, path, sha)
        for product in dict.fromkeys(r.products):
            photos.append(NewPhoto(str(product), r.category, sha, stored, f"street2shop:{r.photo_id}", width,
                                   height, r.box_xyxy, r.crop_rule))
            take.append(i)
    if photos:
        finish_add_or_roll_back(cat.applier, begin_add(cat.applier, photos, descriptors[np.asarray(take)]))
        maintain(cat.applier, {p.category for p in photos})
    return len(photos)


def _present_lines(cat: Catalogue) -> List[ProductLine]:
    """The catalogue's photos as product-list lines (their given boxes kept; detected crops redone)."""
    out = []
    for r in db.lines_of_visible(cat.conn):
        box = tuple(db.box_of(r)) if r["rule"] == GIVEN_BOX else None
        out.append(ProductLine(r["photo_id"], cat.root / r["file"], r["source"] or r["file"], r["product"],
                               r["category"], box, r["title"], r["url"]))
    return out


def collection_outside(cat: Catalogue, root: Path) -> bool:
    """Whether the catalogue's Milvus collection lives outside its folder (on a server, or in a Milvus Lite
    folder elsewhere): it does not go away with the folder."""
    if not cat.vectors_spec.is_milvus:
        return False
    uri = cat.vectors_spec.resolved_uri(root)
    return "://" in uri or not Path(uri).resolve().is_relative_to(Path(root).resolve())


def exchange_dirs(a: Path, b: Path) -> None:
    """Swap two directories atomically where the kernel can (Linux renameat2), else by two renames."""
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is not None:
        at_fdcwd, rename_exchange = -100, 2
        if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
            fsync_dir(b.parent)  # the exchange survives a power cut
            return
    aside = b.parent / f".{b.name}.old-{os.getpid()}"
    os.rename(b, aside)
    os.rename(a, b)
    os.rename(aside, a)
    fsync_dir(b.parent)


def reindex_catalogue(pcfg, root: Path, run: str, *, device="cpu", index_factory: Optional[str] = None) -> Dict:
    """Bind the catalogue to descriptor run ``run``: every photo cropped and embedded again."""
    root = Path(root)
    with Catalogue.writing(root, "detret catalogue reindex") as old:
        factory = index_factory or old.card.index_factory
        tmp, new = staging_folder(root, "reindexing"), None
        try:
            new = _new_catalogue(pcfg, tmp, run, factory, old.vectors_spec)
            report = add_lines(new, _present_lines(old), BoundModels(new.card, tmp, device))
            new.close()
            old.close_vectors()   # (an embedded Milvus Lite folder inside it moves with it)
            exchange_dirs(tmp, root)
        except BaseException:
            abandon_new(new, tmp)
            raise
        if collection_outside(old, root):   # the old collection is no catalogue's any more
            old.milvus.drop()
    shutil.rmtree(tmp, ignore_errors=True)  # the old catalogue, now at tmp
    return {"catalogue": str(root), "run": run, "identity": new.card.identity, "index_factory": factory,
            **report.to_json()}
