"""Shared fixtures: the real annotation fixtures and a small synthetic dataset."""
from pathlib import Path

import pytest

from detret.data.synth.generate import SynthConfig

FIXTURES = Path(__file__).resolve().parent / "fixtures"
REALDATA = FIXTURES / "realdata"
# The small synthetic dataset of `synth_small`. 48 ModaNet-style photos: with this seed every one of the
# 13 labels appears (the data check requires it).
SYNTH_SMALL = SynthConfig(seed=3, n_products=33, n_distractors=11, n_modanet_train=48, n_modanet_val=3)


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


def copy_catalogue(src, dst):
    """A private copy of a catalogue a test may change."""
    import shutil

    shutil.copytree(src, dst)
    return dst


def load_tool(name: str):
    """A script of tools/ (not a package) imported as a module, e.g. ``load_tool("benchmark")``."""
    import importlib.util
    import sys

    path = Path(__file__).resolve().parents[1] / "tools" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"detret_tool_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
