"""Several server processes behind one port (``detret serve --workers N``).

uvicorn's own supervisor starts ``N`` processes that share the listening socket (the kernel spreads the
connections); each builds the app from the options the command line put in ``OPTIONS_ENV`` (the bearer token
stays in ``DETRET_SERVE_TOKEN``, never in the options). Each worker loads its own models and reads the
catalogue as any reader does: the database (WAL: readers never block each other) and the vectors (segment files,
memory-mapped and so shared by the page cache, or a Milvus server). Each worker gets ``cores // N`` PyTorch
threads, so that N workers do not fight over the cores. ``/metrics`` answers for the worker that took the
request (scrape each worker's own port when running N single-worker servers instead).

Milvus Lite embedded lets one process open its folder: N workers need Milvus Lite's server mode or a Milvus
server (:func:`check_workers` refuses otherwise, before anything starts).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict

from ..errors import InputError

OPTIONS_ENV = "DETRET_SERVE_OPTIONS"
TOKEN_ENV = "DETRET_SERVE_TOKEN"


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def check_workers(root: Path, workers: int) -> None:
    """Refuse N workers on a catalogue whose Milvus Lite folder only one process may open."""
    if workers <= 1:
        return
    from ..catalogue.store import Catalogue

    cat = Catalogue.open(root)
    try:
        spec = cat.vectors_spec
    finally:
        cat.close()
    if spec.is_milvus and "://" not in str(spec.uri):
        raise InputError(f"--workers {workers}: the vectors of {root} are in Milvus Lite embedded ({spec.uri}), "
                         "which one process at a time may open; run Milvus Lite as a server (`milvus-lite server "
                         "--data-dir PATH --host 127.0.0.1`) and move the vectors there (`detret catalogue reindex "
                         f"{root} --vectors milvus:http://127.0.0.1:19530`), or serve with one worker")


def app_from_environment():
    """The app of one worker (uvicorn calls it in each worker process)."""
    import torch

    from ..config.choices import EngineChoice
    from .app import create_app
    from .protocol import DeadlineH11Protocol
    from .uploads import Limits

    options: Dict = json.loads(os.environ[OPTIONS_ENV])
    torch.set_num_threads(max(1, cores() // int(options["workers"])))
    DeadlineH11Protocol.header_timeout_s = float(options["header_timeout_s"])   # this process's protocol class
    engine = EngineChoice(**options["engine"]) if options.get("engine") else None
    return create_app(Path(options["catalogue"]), device=options["device"], token=os.environ.get(TOKEN_ENV) or None,
                      max_batch=options["max_batch"], max_queue=options["max_queue"], limits=Limits(**options["limits"]),
                      engine_choice=engine)


def run_workers(options: Dict, *, host: str, port: int, max_connections: int) -> None:
    """uvicorn with ``options["workers"]`` processes, each calling :func:`app_from_environment`."""
    import uvicorn

    os.environ[OPTIONS_ENV] = json.dumps(options)
    uvicorn.run("detret.serve.workers:app_from_environment", factory=True, workers=int(options["workers"]),
                host=host, port=port, log_level="warning", server_header=False,
                limit_concurrency=max_connections, timeout_keep_alive=5,
                http="detret.serve.protocol:DeadlineH11Protocol")
