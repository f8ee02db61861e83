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
