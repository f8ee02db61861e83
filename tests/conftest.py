"""Shared fixtures: the real annotation fixtures and a small synthetic dataset."""
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"
REALDATA = FIXTURES / "realdata"


@pytest.fixture(scope="session")
def realdata() -> Path:
    return REALDATA


@pytest.fixture(scope="session")
def synth_small(tmp_path_factory):
    """A small synthetic dataset (both formats), generated once per test session."""
    from detret.data.synth.generate import SynthConfig, generate

    cfg = SynthConfig(seed=3, n_products=33, n_distractors=11, n_modanet_train=24, n_modanet_val=3)
    out = tmp_path_factory.mktemp("synth_small")
    summary = generate(cfg, out)
    return out, cfg, summary


@pytest.fixture(scope="session")
def demo_quick(tmp_path_factory):
    """`detret demo --quick` run once per test session: every stage on a tiny synthetic dataset.

    Returns (out folder, run_demo's result). Tests must not modify it.
    """
    from detret.demo.run import run_demo

    out = tmp_path_factory.mktemp("demo_quick")
    result = run_demo(out, quick=True, overrides=["device=cpu"])
    return out, result
