"""The service's routes (FastAPI); ``detret serve`` runs :func:`create_app` on uvicorn.

- ``POST /api/search`` (multipart: ``photo``; optional ``category``, ``box`` = "x0,y0,x1,y1", ``k``):
  ``{"garments": [{"category", "box_xyxy", "rule", "label", "results": [{"rank", "product", "photo_id",
  "score", "photo_url", "box_xyxy", "title", "url", "category"}]}], "timings_ms": {...}}``;
- ``GET /api/photos/{photo_id}``: a catalogue photo by id (never by a path the client names);
- ``GET /api/catalogue``: the catalogue's summary; ``POST /api/catalogue`` and
  ``DELETE /api/catalogue/products/{product}``: changes, behind a bearer token (``admin.py``);
- ``GET /healthz`` (the database and the models' worker), ``GET /metrics`` (Prometheus text),
  ``GET /docs`` (OpenAPI, its assets served by detret), ``GET /`` (the page).

Every refusal is a 4xx JSON ``{"error": "<field>: <problem>"}`` (503 when busy or past a deadline,
507 when the catalogue's disk is full); the server goes on serving, and one request's bad photo
fails that request only. Uploaded photos are decoded in memory, reduced, and never written to the
catalogue. The layers around the routes, outermost first: metrics (``metrics.Observed``), security
headers (``headers.py``), the gate (``limits.py``: the token before the body, body limits, uploads
at once, the body deadline).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import mimetypes
import threading
import time
from pathlib import Path
from typing import Dict, Optional

from fastapi import APIRouter, FastAPI, File, Form, Path as PathParam, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..catalogue import db
from ..catalogue.binding import read_card
from ..catalogue.layout import CatalogueLayout
from ..config.choices import EngineChoice
from ..catalogue.store import Catalogue
from ..errors import DetretError, VectorStoreError
from .admin import admin_router
from .batcher import Batcher, QueueFull, TimedOut
from .docs import DOCS_PATH, add_docs_routes, inline_script_hashes
from .engine import Job, SearchEngine, db_inode
from .headers import SecurityHeaders, policy_with_script_hashes
from .limits import Gate, GateLimits
from .metrics import Observed, ServiceMetrics
from .schemas import CatalogueSummary, Health, SearchAnswer, binary, refusals
from .uploads import (
    Limits,
    RequestError,
    check_box,
    check_category,
    check_k,
    decode_photo,
    read_limited,
)

logger = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).resolve().parent / "static"
MAX_PHOTO_ID = 2**63 - 1   # SQLite's largest integer
BUSY = {"Retry-After": "1"}


class Reader:
    """A database connection for the HTTP handlers (the batcher's worker has the engine's own),
    reopened when a reindex has replaced the database."""

    def __init__(self, root: Path) -> None:
        self.root, self.lock = Path(root), threading.Lock()
        self.inode, self.conn = db_inode(root), db.connect(CatalogueLayout(root).db)

    @contextlib.contextmanager
    def __call__(self):
        with self.lock:
            if db_inode(self.root) != self.inode:
                self.conn.close()
                self.inode, self.conn = db_inode(self.root), db.connect(CatalogueLayout(self.root).db)
            yield self.conn


def _error(status: int, message: str, headers: Optional[dict] = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI, root: Path) -> None:
    @app.exception_handler(RequestError)
    async def request_error(_, exc: RequestError):
        return _error(exc.status, exc.message)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_, exc: RequestValidationError):
        problems = [f"{e['loc'][-1] if e.get('loc') else 'request'}: {e['msg']}" for e in exc.errors()]
        return _error(422, "; ".join(problems) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_, exc: StarletteHTTPException):
        return _error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(DetretError)
    async def user_error(_, exc: DetretError):
        return _error(400, str(exc).replace(str(root), root.name))  # never the server's own paths

    @app.exception_handler(VectorStoreError)
    async def store_down(_, exc: VectorStoreError):   # (its message names an internal server: not echoed)
        logger.error("%s", exc)
        return _error(503, "the catalogue's vector store did not answer; retry in a moment", BUSY)

    @app.exception_handler(QueueFull)
    async def queue_full(_, exc: QueueFull):
        return _error(503, "busy: too many searches waiting; retry in a moment", BUSY)

    @app.exception_handler(TimedOut)
    async def timed_out(_, exc: TimedOut):
        return _error(503, f"busy: {exc}; retry in a moment", BUSY)


def search_router(engine: SearchEngine, batcher: Batcher, limits: Limits, metrics: ServiceMetrics) -> APIRouter:
    """``POST /api/search``."""
    router = APIRouter(tags=["search"])
    decoding = asyncio.Semaphore(limits.decode_slots)

    @router.post("/api/search", summary="Find the catalogue's products in a photo", response_model=SearchAnswer,
                 responses=refusals(400, 408, 413, 422, 503))
    async def search(photo: UploadFile = File(..., description="The photo (JPEG, PNG, WebP, GIF, BMP, TIFF)."),
                     category: Optional[str] = Form(None, description="Retrieval category; none: shop the look."),
                     box: Optional[str] = Form(None, description="x0,y0,x1,y1 in pixels (needs a category)."),
                     k: int = Form(20, description="Results per garment.")):
        started = time.perf_counter()
        category, k = check_category(category, engine.categories, engine.has_detector), check_k(k, limits)  # cheap checks first
        if batcher.full():
            raise QueueFull()  # before the photo costs a decode
        data = await read_limited(photo, limits.max_upload_bytes, "photo")
        async with decoding:
            decoded = await run_in_threadpool(decode_photo, data, photo.filename or "upload", limits)
        del data
        job = Job(decoded.rgb, category, check_box(box, category, decoded), k,
                  {"decode": (time.perf_counter() - started) * 1e3}, decoded.scale_xy)
        metrics.queue.set(batcher.waiting())
        result = await batcher.submit(job)
        result["timings_ms"] = {name: round(v, 2) for name, v in result["timings_ms"].items()}
        result["timings_ms"]["total"] = round((time.perf_counter() - started) * 1e3, 2)
        return result

    return router


def catalogue_router(engine: SearchEngine, reader: Reader) -> APIRouter:
    """What a client reads of the catalogue: its photos and its summary."""
    router = APIRouter(tags=["catalogue"])

    @router.get("/api/photos/{photo_id}", summary="A catalogue photo, by id", response_class=FileResponse,
                responses={**binary("image/*", "The stored photo"), **refusals(404, 422)})
    def photo(photo_id: int = PathParam(..., ge=0, le=MAX_PHOTO_ID)):
        with reader() as conn:
            row = db.visible_photos(conn, [photo_id]).get(photo_id)
        if row is None:
            raise RequestError(404, f"photo_id: {photo_id} is not in the catalogue")
        path = engine.root / row["file"]
        if not path.is_file():
            logger.error("%s: stored photo of photo_id %d is missing (run `detret catalogue check`)", path, photo_id)
            raise RequestError(404, f"photo_id: {photo_id}: its stored photo is missing (the operator is told)")
        return FileResponse(path, media_type=mimetypes.guess_type(path.name)[0] or "application/octet-stream")

    @router.get("/api/catalogue", summary="Counts per category, the model, the index",
                response_model=CatalogueSummary)
    def catalogue():
        with reader() as conn:
            summary = Catalogue(engine.root, conn, read_card(engine.root)).summary(with_size=False)
        summary["catalogue"] = engine.root.name  # never the server's own paths
        return summary

    return router


def operations_router(reader: Reader, batcher: Batcher, metrics: ServiceMetrics) -> APIRouter:
    """What an operator's probes read: liveness, metrics, and the page."""
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="Liveness: the database answers and the models' worker is not stuck",
                response_model=Health, responses={503: {"model": Health, "description": "The worker is stuck"}})
    def healthz():
        with reader() as conn:
            photos, identity = db.present_photo_count(conn), db.get_meta(conn)["identity"]
        worker = batcher.health()
        body = {"status": "ok" if worker["ok"] else "unhealthy", "photos": photos, "model": identity,
                "worker": worker}
        return body if worker["ok"] else JSONResponse(Health(**body).model_dump(), status_code=503)

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response,
                responses=binary(CONTENT_TYPE_LATEST.split(";")[0], "Prometheus text exposition"))
    def prometheus():
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @router.get("/", include_in_schema=False)
    def page():
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    return router


def _bare_app(lifespan=None) -> FastAPI:
    return FastAPI(title="detret", description="Street-to-shop search of a catalogue (Kucer & Murray 2019).",
                   lifespan=lifespan, docs_url=None, redoc_url=None)


def openapi_document() -> Dict:
    """The service's OpenAPI document without a catalogue or models (the documentation renders it)."""
    app = _bare_app()
    app.include_router(search_router(None, None, Limits(), None))
    app.include_router(catalogue_router(None, None))
    app.include_router(operations_router(None, None, None))
    app.include_router(admin_router(None, token=None))
    return app.openapi()


def create_app(root: Path, *, device="cpu", limits: Limits = Limits(), token: Optional[str] = None,
               max_batch: int = 8, max_queue: int = 32, engine_choice: Optional[EngineChoice] = None) -> FastAPI:
    """The service over catalogue ``root``; models loaded now, once (run by ``engine_choice``: default as the
    catalogue was built)."""
    engine = SearchEngine(root, device, max_garments=limits.max_garments, engine=engine_choice)
    engine.warm_up()
    batcher = Batcher(engine.run, max_batch=max_batch, max_queue=max_queue, timeout_s=limits.search_timeout_s)
    reader, metrics = Reader(engine.root), ServiceMetrics()

    @contextlib.asynccontextmanager
    async def lifespan(_):
        yield
        batcher.close()

    app = _bare_app(lifespan)
    app.state.engine, app.state.batcher, app.state.metrics = engine, batcher, metrics
    _install_error_handlers(app, engine.root)
    app.include_router(search_router(engine, batcher, limits, metrics))
    app.include_router(catalogue_router(engine, reader))
    app.include_router(operations_router(reader, batcher, metrics))
    app.include_router(admin_router(engine, token))
    docs_page = add_docs_routes(app)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    gate = GateLimits(search_bytes=limits.max_upload_bytes + 64 * 1024, admin_bytes=limits.max_admin_bytes,
                      max_uploads=limits.max_uploads, body_timeout_s=limits.body_timeout_s)
    app.add_middleware(Gate, limits=gate, token=token)   # add_middleware: the last added is the outermost
    app.add_middleware(SecurityHeaders, policies={DOCS_PATH: policy_with_script_hashes(
        inline_script_hashes(docs_page))})
    app.add_middleware(Observed, metrics=metrics)
    return app
