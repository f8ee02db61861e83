"""`detret serve`: a catalogue searched over HTTP, with its web page."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Optional

import typer

from ..config.choices import Engine, Precision
from .engine_options import detector_precision_option, engine_choice, engine_option, precision_option
from ..serve.workers import TOKEN_ENV
from .context import console


def serve(
    catalogue: Path = typer.Argument(..., file_okay=False, help="The catalogue folder (detret catalogue create)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; the default is this machine only. "
                                                         "0.0.0.0 exposes the service to the network."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="TCP port."),
    device: str = typer.Option("cpu", "--device", help="Device for the detector and the descriptor model."),
    max_batch: int = typer.Option(8, "--max-batch", min=1, help="Searches run through the models together."),
    max_queue: int = typer.Option(32, "--max-queue", min=1, help="Searches that may wait; more get 503 + "
                                                                 "Retry-After."),
    max_upload_mb: float = typer.Option(16.0, "--max-upload-mb", min=0.01, help="Largest photo upload."),
    max_connections: int = typer.Option(128, "--max-connections", min=1, help="Open connections and requests at "
                                                                              "once; more get 503."),
    max_uploads: int = typer.Option(16, "--max-uploads", min=1, help="Requests with a body received or answered "
                                                                     "at once; more get 503 + Retry-After."),
    body_timeout_s: float = typer.Option(60.0, "--body-timeout-s", min=0.1, help="A request body must arrive "
                                                                                 "within this; else 408."),
    search_timeout_s: float = typer.Option(30.0, "--search-timeout-s", min=0.1, help="A search must be answered "
                                                                                     "within this; else 503."),
    header_timeout_s: float = typer.Option(10.0, "--header-timeout-s", min=0.1, help="A connection that sends no "
                                           "complete request within twice this is closed."),
    workers: int = typer.Option(1, "--workers", min=1, help="Server processes sharing the port, each with its own "
                                                             "models (memory x N) and cores // N threads."),
    engine: Optional[Engine] = engine_option(),
    precision: Precision = precision_option(),
    detector_precision: Optional[Precision] = detector_precision_option(),
) -> None:
    """Serve a catalogue: POST /api/search, the page at /, OpenAPI at /docs, metrics at /metrics.

    Catalogue changes over HTTP (POST /api/catalogue, DELETE /api/catalogue/products/ID) need
    `Authorization: Bearer $DETRET_SERVE_TOKEN`; they are disabled when the variable is not set.
    """
    import uvicorn

    from ..serve.app import create_app
    from ..serve.protocol import protocol_with_header_timeout
    from ..serve.uploads import Limits
    from ..serve.workers import check_workers, run_workers
    from ..utils.device import resolve_device

    choice = engine_choice(engine, precision, detector_precision)
    token = os.environ.get(TOKEN_ENV) or None
    limit_values = {"max_upload_bytes": int(max_upload_mb * 2**20), "max_uploads": max_uploads,
                    "body_timeout_s": body_timeout_s, "search_timeout_s": search_timeout_s}
    limits = Limits(**limit_values)
    printer = console()
    if workers > 1:
        check_workers(catalogue, workers)
        printer.print(f"serving {catalogue} on http://{host}:{port}/ with {workers} workers; catalogue changes "
                      f"over HTTP {'enabled (bearer token)' if token else 'disabled (set ' + TOKEN_ENV + ')'}")
        run_workers({"catalogue": str(Path(catalogue).resolve()), "device": str(resolve_device(device)),
                     "max_batch": max_batch, "max_queue": max_queue, "limits": limit_values, "workers": workers,
                     "header_timeout_s": header_timeout_s, "engine": dataclasses.asdict(choice) if choice else None},
                    host=host, port=port, max_connections=max_connections)
        return
    app = create_app(catalogue, device=resolve_device(device), token=token, max_batch=max_batch, max_queue=max_queue,
                     limits=limits, engine_choice=choice)
    printer.print(f"serving {catalogue} on http://{host}:{port}/ (API docs at /docs); catalogue changes over HTTP "
                  f"{'enabled (bearer token)' if token else 'disabled (set ' + TOKEN_ENV + ')'}")
    # limit_concurrency: connections (and their requests) at once, answered 503 past it; an idle keep-alive
    # connection is closed after 5 s; a request's headers must arrive within 2 x header_timeout_s (protocol.py).
    uvicorn.run(app, host=host, port=port, log_level="warning", server_header=False,
                limit_concurrency=max_connections, timeout_keep_alive=5,
                http=protocol_with_header_timeout(header_timeout_s))
