"""What several test modules use: the synthetic dataset's settings, private catalogue copies, the
benchmark modules of tools/. (Fixtures are in conftest.py; tests import helpers from here, never from
conftest or from another test module.)"""
import importlib
import os
import shutil
import sys
from pathlib import Path

import pytest

from detret.data.synth.generate import SynthConfig

FIXTURES = Path(__file__).resolve().parent / "fixtures"
REALDATA = FIXTURES / "realdata"
TOOLS = Path(__file__).resolve().parents[1] / "tools"
# Settings that train a retrieval network in seconds on a tiny synthetic dataset.
FAST_RETRIEVAL = ["device=cpu", "retrieval.train.architecture=resnet18", "retrieval.train.pretrained=false",
                  "retrieval.train.image_size=64", "retrieval.train.resize=square", "retrieval.train.batch_size=6",
                  "retrieval.train.lr=1e-4", "retrieval.train.dim=32", "retrieval.train.val_fraction=0.25",
                  "retrieval.train.mine_k=5"]
# The small synthetic dataset of `synth_small`. 48 ModaNet-style photos: with this seed every one of the
# 13 labels appears (the data check requires it).
SYNTH_SMALL = SynthConfig(seed=3, n_products=33, n_distractors=11, n_modanet_train=48, n_modanet_val=3)


def copy_catalogue(src, dst):
    """A private copy of a catalogue a test may change."""
    import shutil

    shutil.copytree(src, dst)
    return dst


def tool(name: str):
    """tools/<name>.py or a benchmark module (``"benchs.hostile"``), imported with tools/ on sys.path as
    tools/benchmark.py runs them."""
    if str(TOOLS) not in sys.path:
        sys.path.insert(0, str(TOOLS))
    return importlib.import_module(name)


CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                  "--disable-background-networking", "--disable-component-update"]


def chromium_binary() -> str:
    for candidate in (os.environ.get("DETRET_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser"),
                      shutil.which("google-chrome")):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.fail("no Chromium found for the report's browser test: `apt-get install chromium` "
                "(tools/install.sh does it as root) or set $DETRET_CHROMIUM")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_milvus_server(data_dir: Path, timeout_s: float = 60.0):
    """`milvus-lite server` on 127.0.0.1 at a free port, answering; (process, its URI)."""
    import subprocess
    import time

    from pymilvus import MilvusClient

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(data_dir), "--host",
                             "127.0.0.1", "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            pytest.fail(f"milvus-lite server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            client = MilvusClient(uri=uri, timeout=2)
            client.list_collections()
            client.close()
            return proc, uri
        except Exception:  # noqa: BLE001 -- not answering yet
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"milvus-lite server on {uri} did not answer within {timeout_s} s")
            time.sleep(0.2)
