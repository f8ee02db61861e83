"""Catalogue changes over HTTP, only with ``Authorization: Bearer <DETRET_SERVE_TOKEN>``.

Without a token configured the routes answer 403 (disabled); the gate (``limits.py``) refuses a request
without the token before reading its body, and the routes check it again. ``POST /api/catalogue`` takes the
product list as a CSV upload (``products``, the columns of ``catalogue add``) and the photos it names
as uploads (``photos``, matched by file name); a line may only name an uploaded photo, never a
path on the server. The change runs under the catalogue's writer lock (409 while another writer
holds it) with the server's loaded models, and searches go on meanwhile. A full disk is answered 507
and leaves nothing pending (``changes.py``), so a removal can still free space.
"""
from __future__ import annotations

import errno
import shutil
import tempfile
from pathlib import Path
from typing import List, Optional

from fastapi import APIRouter, Depends, File, Header, Path as PathParam, UploadFile
from starlette.concurrency import run_in_threadpool

from ..catalogue.add import add_lines
from ..catalogue.binding import ModelMismatch
from ..catalogue.lock import CatalogueBusy
from ..catalogue.products_csv import read_products_csv
from ..catalogue.remove import remove_products
from ..catalogue.store import Catalogue
from ..errors import InputError, UnknownNameError
from .engine import SearchEngine
from ..utils.disk import DiskSpaceError
from .limits import token_refusal
from .schemas import Added, Removed, refusals
from .uploads import RequestError

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def _token_check(token: Optional[str]):
    def require_token(authorization: Optional[str] = Header(None)) -> None:
        refusal = token_refusal(token, None if authorization is None else authorization.encode("latin-1", "replace"))
        if refusal is not None:
            raise RequestError(*refusal)
    return require_token


def _save_uploads(folder: Path, products: UploadFile, photos: List[UploadFile]) -> Path:
    """The uploads as files of ``folder`` (copied from starlette's spooled files, never whole in memory)."""
    for up in photos:
        name = Path(up.filename or "").name
        if not name or name in (".", "..") or name != (up.filename or "") or name == "products.csv":
            raise RequestError(400, f"photos: {up.filename!r} is not a plain file name")
        with open(folder / name, "wb") as out:
            shutil.copyfileobj(up.file, out)
    csv_path = folder / "products.csv"
    with open(csv_path, "wb") as out:
        shutil.copyfileobj(products.file, out)
    return csv_path


def _disk_full(exc: OSError) -> RequestError:
    return RequestError(507, f"the server's disk is full ({exc.strerror}); nothing was changed: free space (removing "
                             "products is allowed) and retry")


def _add(engine: SearchEngine, folder: Path, csv_path: Path):
    with Catalogue.writing(engine.root, "detret serve (POST /api/catalogue)") as cat:
        try:
            engine.models.check_identity(cat.card.identity)  # reindexed since the models were loaded
        except ModelMismatch as exc:
            raise RequestError(409, f"the catalogue was reindexed; search once (which loads its new model), then "
                                    f"retry ({exc})") from None
        try:
            lines = read_products_csv(csv_path, list(cat.card.category_map))
        except InputError as exc:
            raise RequestError(400, f"products: {str(exc).replace(str(csv_path), 'products.csv')}") from None
        for ln in lines:
            if ln.photo.parent != folder.resolve():
                raise RequestError(400, f"products: line {ln.line} names {ln.source!r}; name one of the uploaded "
                                        "photos (by file name)")
        report = add_lines(cat, lines, engine.models).to_json()
        for d in report["duplicates"]:
            d["of"].pop("file", None)   # a stored photo's file inside the catalogue is no client's business
        return report


def admin_router(engine: SearchEngine, token: Optional[str]) -> APIRouter:
    """The catalogue's changes, behind the bearer token."""
    router = APIRouter(tags=["changes"], dependencies=[Depends(_token_check(token))])

    @router.post("/api/catalogue", summary="Add products (bearer token)", response_model=Added,
                 responses=refusals(400, 401, 403, 408, 409, 413, 422, 507))
    async def add(products: UploadFile = File(..., description="CSV: photo,product,category[,box][,title][,url]"),
                  photos: List[UploadFile] = File([], description="The photos the CSV names, by file name")):
        try:
            with tempfile.TemporaryDirectory(prefix="detret-upload-") as tmp:
                csv_path = await run_in_threadpool(_save_uploads, Path(tmp), products, photos)
                return await run_in_threadpool(_add, engine, Path(tmp), csv_path)
        except CatalogueBusy as exc:
            raise RequestError(409, str(exc)) from None
        except DiskSpaceError:
            raise RequestError(507, "the server's disk is full; the add was rolled back, nothing was changed: free "
                                    "space (removing products is allowed) and retry") from None
        except OSError as exc:
            if exc.errno in DISK_FULL:
                raise _disk_full(exc) from None
            raise

    # ``:path``: a product id may hold "/" (sent as %2F, which the router decodes before matching)
    @router.delete("/api/catalogue/products/{product:path}", summary="Remove a product (bearer token)",
                   response_model=Removed, responses=refusals(401, 403, 404, 409, 507))
    async def remove(product: str = PathParam(..., description="The product id (URL-encoded)")):
        try:
            return await run_in_threadpool(remove_products, engine.root, product=product,
                                           holder="detret serve (DELETE /api/catalogue/products)")
        except CatalogueBusy as exc:
            raise RequestError(409, str(exc)) from None
        except UnknownNameError:
            raise RequestError(404, f"product: {product!r} is not in the catalogue") from None
        except OSError as exc:
            if exc.errno in DISK_FULL:
                raise _disk_full(exc) from None
            raise

    return router
