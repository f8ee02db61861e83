"""`detret export`: the ONNX file run by onnxruntime and the TorchScript file give detret's descriptors."""
import json

import numpy as np
import pytest
import torch

from detret.retrieval.export import export_network
from detret.retrieval.model import build_retrieval_net, save_checkpoint


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.parametrize("architecture, pooling, streams", [
    ("resnet18", "gem", "shared"), ("resnet18", "mac", "domain"), ("resnet18", "rmac", "shared"),
    ("timm:vit_tiny_patch16_224", "gem", "shared")])
def test_onnx_file_run_by_onnxruntime_matches_detret(tmp_path, architecture, pooling, streams):
    import onnxruntime as ort

    torch.manual_seed(0)
    model = build_retrieval_net(architecture, dim=16, pretrained=False, pooling=pooling, streams=streams,
                                image_size=64).eval()
    if model.street is not None:
        with torch.no_grad():
            model.street.whiten.weight.mul_(-1.0)
    save_checkpoint(tmp_path / "m.pt", model)
    record = export_network(tmp_path / "m.pt", tmp_path / "out", "onnx")
    assert json.loads((tmp_path / "out" / "meta.json").read_text()) == record
    assert set(record["files"]) == ({"shop", "street"} if streams == "domain" else {"shop"})
    shapes = [(3, 3, 64, 64)] if pooling == "rmac" else [(3, 3, 64, 64), (1, 3, 80, 48)]
    assert record["input"]["dynamic_axes"] == (["batch"] if pooling == "rmac" else ["batch", "height", "width"])
    for domain, name in record["files"].items():
        session = ort.InferenceSession(str(tmp_path / "out" / name), providers=["CPUExecutionProvider"])
        for shape in shapes:
            x = torch.randn(*shape)
            got = session.run(["descriptor"], {"image": x.numpy()})[0]
            with torch.no_grad():
                expected = model(x, domain).numpy()
            assert got.shape == expected.shape and _cosines(got, expected).min() >= 0.9999, (domain, shape)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_torchscript_file_matches_detret(tmp_path):
    torch.manual_seed(0)
    model = build_retrieval_net("resnet18", dim=16, pretrained=False, image_size=64).eval()
    save_checkpoint(tmp_path / "m.pt", model)
    record = export_network(tmp_path / "m.pt", tmp_path / "out", "torchscript")
    loaded = torch.jit.load(str(tmp_path / "out" / record["files"]["shop"]))
    for shape in [(2, 3, 64, 64), (1, 3, 96, 40)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            assert torch.allclose(loaded(x), model(x), atol=1e-5)


def test_export_refuses_an_unknown_format(tmp_path):
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "m.pt", build_retrieval_net("resnet18", dim=8, pretrained=False))
    with pytest.raises(ValueError, match="export format 'tflite' is not one of onnx, torchscript"):
        export_network(tmp_path / "m.pt", tmp_path / "out", "tflite")
