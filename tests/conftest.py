"""Shared fixtures: the real annotation fixtures and a small synthetic dataset."""
import os
from pathlib import Path

import pytest

from .helpers import REALDATA, SYNTH_SMALL

# Tests never download: the Hugging Face hub (foundation models) is read from its cache only.
os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture(scope="session")
def realdata() -> Path:
    return REALDATA


@pytest.fixture(scope="session")
def synth_small(tmp_path_factory):
    """A small synthetic dataset (both formats), generated once per test session."""
    from detret.data.synth.generate import generate

    out = tmp_path_factory.mktemp("synth_small")
    summary = generate(SYNTH_SMALL, out)
    return out, SYNTH_SMALL, summary


@pytest.fixture(scope="session")
def demo_quick(tmp_path_factory):
    """`detret demo --quick` run once per test session: every stage on a tiny synthetic dataset.

    Returns (out folder, run_demo's result). Tests must not modify it.
    """
    from detret.demo.run import run_demo

    out = tmp_path_factory.mktemp("demo_quick")
    result = run_demo(out, quick=True, overrides=["device=cpu"])
    return out, result


@pytest.fixture(scope="session")
def demo_catalogue(demo_quick, tmp_path_factory):
    """A catalogue made from the quick demo's run "tri-crops" with its own gallery imported
    (`catalogue create --import-gallery`). Returns (catalogue folder, pipeline config).
    Tests must not modify it: copy it (`copy_catalogue`) to change it."""
    from detret.catalogue.create import create_catalogue
    from detret.config.pipeline import load_pipeline_config

    _, result = demo_quick
    pcfg = load_pipeline_config(result["config"], ["device=cpu"])
    root = tmp_path_factory.mktemp("catalogues") / "demo_cat"
    create_catalogue(pcfg, root, "tri-crops", import_gallery=True)
    return root, pcfg


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory):
    """Milvus Lite's own gRPC server (`milvus-lite server`), started on 127.0.0.1 for the session: the network
    client as a Milvus cluster would see it. Yields its URI (http://127.0.0.1:PORT)."""
    from .helpers import start_milvus_server

    proc, uri = start_milvus_server(tmp_path_factory.mktemp("milvus-server"))
    yield uri
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except Exception:  # noqa: BLE001 -- a server that does not stop is killed
        proc.kill()


@pytest.fixture(params=["faiss", "milvus-lite", "milvus-server", "milvus-cluster"])
def vectors_backend(request):
    """The catalogue contract's backends: (name, --vectors value). A Milvus Lite path is inside the catalogue
    folder; the server backend is the session's `milvus_server`; a real Milvus (standalone or cluster) when
    DETRET_MILVUS_URI names one (token in DETRET_MILVUS_TOKEN), skipped otherwise."""
    import os

    if request.param == "faiss":
        return "faiss", "faiss"
    if request.param == "milvus-lite":
        return "milvus-lite", "milvus:vectors.db"
    if request.param == "milvus-cluster":
        uri = os.environ.get("DETRET_MILVUS_URI")
        if not uri:
            pytest.skip("DETRET_MILVUS_URI is not set: no real Milvus to run the contract on")
        return "milvus-cluster", "milvus:" + uri
    return "milvus-server", "milvus:" + request.getfixturevalue("milvus_server")
