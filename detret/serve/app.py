"""The service's routes (FastAPI); ``detret serve`` runs :func:`create_app` on uvicorn.

- ``POST /api/search`` (multipart: ``photo``; optional ``category``, ``box`` = "x0,y0,x1,y1", ``k``):
  ``{"garments": [{"category", "box_xyxy", "rule", "label", "results": [{"rank", "product", "photo_id",
  "score", "photo_url", "box_xyxy", "title", "url", "category"}]}], "timings_ms": {...}}``;
- ``GET /api/photos/{photo_id}``: a catalogue photo by id (never by a path the client names);
- ``GET /api/catalogue``: the catalogue's summary; ``POST /api/catalogue`` and
  ``DELETE /api/catalogue/products/{product}``: changes, behind a bearer token (``admin.py``);
- ``GET /healthz``, ``GET /metrics`` (Prometheus text), ``GET /docs`` (OpenAPI), ``GET /`` (the page).

Every refusal is a 4xx JSON ``{"error": "<field>: <problem>"}``; the server goes on serving. Uploaded
photos are decoded in memory and never written to the catalogue.
"""
from __future__ import annotations

import contextlib
import logging
import mimetypes
import threading
import time
from pathlib import Path
from typing import Optional

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..catalogue import db
from ..catalogue.binding import read_card
from ..catalogue.layout import CatalogueLayout
from ..catalogue.store import Catalogue
from ..errors import DetretError
from .admin import add_admin_routes
from .batcher import Batcher, QueueFull
from .engine import Job, SearchEngine, db_inode
from .limits import BodyLimit
from .metrics import ServiceMetrics
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


def _install_error_handlers(app: FastAPI) -> None:
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
        return _error(400, str(exc))


def _install_metrics(app: FastAPI, metrics: ServiceMetrics) -> None:
    @app.middleware("http")
    async def observe(request: Request, call_next):
        started = time.perf_counter()
        try:
            response = await call_next(request)
        except Exception:  # noqa: BLE001 -- a bug: logged with its traceback, answered 500, the server goes on
            logger.exception("%s %s failed", request.method, request.url.path)
            response = _error(500, "internal error (see the server's log)")
        route = request.scope.get("route")
        metrics.observe(getattr(route, "path", "unmatched"), request.method, response.status_code,
                        time.perf_counter() - started)
        return response


def _search_route(app: FastAPI, engine: SearchEngine, batcher: Batcher, limits: Limits,
                  metrics: ServiceMetrics) -> None:
    @app.post("/api/search", summary="Find the catalogue's products in a photo")
    async def search(photo: UploadFile = File(..., description="The photo (JPEG, PNG, WebP, ...)."),
                     category: Optional[str] = Form(None, description="Retrieval category; none: shop the look."),
                     box: Optional[str] = Form(None, description="x0,y0,x1,y1 in pixels (needs a category)."),
                     k: int = Form(20, description="Results per garment.")):
        started = time.perf_counter()
        category, k = check_category(category, engine.categories), check_k(k, limits)  # cheap checks first
        data = await read_limited(photo, limits.max_upload_bytes, "photo")
        rgb = await run_in_threadpool(decode_photo, data, photo.filename or "upload", limits)
        job = Job(rgb, category, check_box(box, category, rgb), k, {"decode": (time.perf_counter() - started) * 1e3})
        metrics.queue.set(batcher.waiting())
        try:
            result = await batcher.submit(job)
        except QueueFull:
            return _error(503, "busy: too many searches waiting; retry in a moment", {"Retry-After": "1"})
        result["timings_ms"] = {name: round(v, 2) for name, v in result["timings_ms"].items()}
        result["timings_ms"]["total"] = round((time.perf_counter() - started) * 1e3, 2)
        return result


def _read_routes(app: FastAPI, engine: SearchEngine, reader: Reader, metrics: ServiceMetrics) -> None:
    @app.get("/api/photos/{photo_id}", summary="A catalogue photo, by id")
    def photo(photo_id: int):
        with reader() as conn:
            row = db.visible_photos(conn, [photo_id]).get(photo_id)
        if row is None:
            raise RequestError(404, f"photo_id: {photo_id} is not in the catalogue")
        path = engine.root / row["file"]
        return FileResponse(path, media_type=mimetypes.guess_type(path.name)[0] or "application/octet-stream")

    @app.get("/api/catalogue", summary="Counts per category, the model, the index")
    def catalogue():
        with reader() as conn:
            return Catalogue(engine.root, conn, read_card(engine.root)).summary(with_size=False)

    @app.get("/healthz", summary="Liveness: the models are loaded and the database answers")
    def healthz():
        with reader() as conn:
            photos = conn.execute("SELECT COUNT(*) FROM photos WHERE state = 'present'").fetchone()[0]
            identity = db.get_meta(conn)["identity"]
        return {"status": "ok", "photos": photos, "model": identity}

    @app.get("/metrics", summary="Prometheus metrics")
    def prometheus():
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")


def create_app(root: Path, *, device="cpu", limits: Limits = Limits(), token: Optional[str] = None,
               max_batch: int = 8, max_queue: int = 64) -> FastAPI:
    """The service over catalogue ``root``; models loaded now, once."""
    engine = SearchEngine(root, device)
    engine.warm_up()
    batcher = Batcher(engine.run, max_batch=max_batch, max_queue=max_queue)
    reader, metrics = Reader(engine.root), ServiceMetrics()

    @contextlib.asynccontextmanager
    async def lifespan(_):
        yield
        batcher.close()

    app = FastAPI(title="detret", description="Street-to-shop search of a catalogue (Kucer & Murray 2019).",
                  lifespan=lifespan)
    app.state.engine, app.state.batcher = engine, batcher
    _install_error_handlers(app)
    _install_metrics(app, metrics)
    _search_route(app, engine, batcher, limits, metrics)
    _read_routes(app, engine, reader, metrics)
    add_admin_routes(app, engine, token)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(BodyLimit, search_bytes=limits.max_upload_bytes + 64 * 1024,
                       admin_bytes=limits.max_admin_bytes)
    return app
