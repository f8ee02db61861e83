"""`detret doctor`: what it finds matches what the machine has (read a second way), its exit status says
whether the configured pipeline can run, and it neither downloads nor loads anything."""
import importlib.metadata
import json
import socket
from pathlib import Path

import pytest

from detret.cli.app import main
from detret.doctor import exit_status, machine_checks, pipeline_checks
from detret.doctor.checks import STATES
from tests.retrieval import tiny_foundation as tiny


def _run(capsys, *args):
    with pytest.raises(SystemExit) as exc:
        main([*args, "doctor", "--json"])
    return exc.value.code, json.loads(capsys.readouterr().out)


@pytest.fixture
def nothing_loaded(monkeypatch):
    """Any download, network connection or model load fails the test."""
    import huggingface_hub
    import torch

    def refuse(*a, **k):
        raise AssertionError(f"doctor must not do this: {a[:2]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    real = huggingface_hub.snapshot_download
    monkeypatch.setattr(huggingface_hub, "snapshot_download",
                        lambda *a, **k: real(*a, **k) if k.get("local_files_only") else refuse(*a))


def test_machine_checks_match_the_machine(nothing_loaded):
    import torch

    checks = machine_checks()
    assert all(c.state in STATES for c in checks)
    found = {(c.area, c.name): c for c in checks}
    assert found[("package", "torch")].detail.startswith(importlib.metadata.version("torch"))
    import detectron2

    compiled = any(p.name.startswith("_C") for p in Path(detectron2.__file__).parent.iterdir())
    route = found[("detectron2", "route")].detail
    assert ("without compiled ops" in route) != compiled
    if torch.cuda.is_available():
        assert found[("device", "cuda:0")].state == "ok"
    else:
        assert found[("device", "cuda")].state == "info"
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    assert ("AVX2" in found[("device", "cpu")].detail) == (" avx2" in flags)


def test_exit_status_says_whether_the_pipeline_can_run(demo_quick, tmp_path, capsys, nothing_loaded):
    _, result = demo_quick
    config = str(result["config"])
    code, checks = _run(capsys, "--config", config, "--set", "device=cpu")
    assert code == 0 and not [c for c in checks if c["state"] == "fail"]
    assert any(c["name"] == "detector" and c["state"] == "ok" for c in checks)
    code, checks = _run(capsys, "--config", config, "--set", "device=cpu", "--set",
                        f"retrieval.models=[{{name: lost, checkpoint: {tmp_path / 'lost.pt'}}}]")
    failed = [c for c in checks if c["state"] == "fail"]
    assert code == 1 and len(failed) == 1 and "lost.pt" in failed[0]["detail"] and failed[0]["fix"]
    code, checks = _run(capsys, "--config", config, "--set", f"detector.weights={tmp_path / 'none.pth'}")
    assert code == 1 and any(c["name"] == "detector" and c["state"] == "fail" for c in checks)


def test_a_cuda_device_without_cuda_fails(demo_quick, monkeypatch, nothing_loaded):
    import torch
    from detret.config.pipeline import load_pipeline_config

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    pcfg = load_pipeline_config(demo_quick[1]["config"], ["device=cuda"])
    checks = pipeline_checks(pcfg)
    assert exit_status(checks) == 1 and checks[0].name == "device" and "device=cpu" in checks[0].fix


def test_foundation_weights_and_catalogue_files(demo_catalogue, tmp_path, nothing_loaded):
    from tests.helpers import copy_catalogue

    saved = tiny.save_hf_dinov2(tmp_path / "dino")
    ok = pipeline_checks(None, "hf:tiny", saved)
    assert [c.state for c in ok] == ["ok"] and "model.safetensors" in ok[0].detail
    missing = pipeline_checks(None, "hf:someone/not-cached")
    assert missing[0].state == "fail" and "someone/not-cached" in missing[0].detail
    root = copy_catalogue(demo_catalogue[0], tmp_path / "cat")
    assert pipeline_checks(None, catalogue=root)[0].state == "ok"
    model = next((root / "models").glob("*.pt"))
    model.write_bytes(model.read_bytes()[:-4] + b"oops")
    bad = pipeline_checks(None, catalogue=root)[0]
    assert bad.state == "fail" and "sha256 differs" in bad.detail
