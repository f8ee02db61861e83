"""Descriptor networks on ONNX Runtime: fp32 gives the torch network's descriptors (each stream of a two-stream
network), int8 keeps them within cosine 0.99, the export is kept and reused, and what it cannot run is refused."""
import json

import numpy as np
import pytest
import torch

from detret.embed.inference import embed_crops
from detret.errors import InputError
from detret.retrieval.descriptor_model import load_descriptor_model
from detret.retrieval.model import build_retrieval_net, save_checkpoint
from detret.retrieval.onnx_engine import engine_folder


def _crops(n, seed):
    """Garment-like crops: smooth colour blobs on a light page, of varied sizes."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        h, w = rng.integers(60, 140, 2)
        yy, xx = np.mgrid[:h, :w]
        blob = ((yy - h / 2) / (h / 3)) ** 2 + ((xx - w / 2) / (w / 3)) ** 2 < 1
        img = np.full((h, w, 3), 235, np.uint8)
        img[blob] = rng.integers(0, 255, 3)
        img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
        out.append(img)
    return out


@pytest.mark.parametrize("streams", ["shared", "domain"])
def test_onnxruntime_gives_the_torch_networks_descriptors(tmp_path, streams):
    torch.manual_seed(0)
    model = build_retrieval_net("resnet18", dim=32, pretrained=False, pooling="gem", streams=streams,
                                image_size=64).eval()
    if model.street is not None:
        with torch.no_grad():
            model.street.whiten.weight.mul_(-1.0)   # (the two streams must differ)
    save_checkpoint(tmp_path / "m.pt", model)
    reference = load_descriptor_model(tmp_path / "m.pt")
    crops, calibration = _crops(24, 1), _crops(32, 2)
    for precision, floor in (("fp32", 0.999), ("int8", 0.99)):
        onnx = load_descriptor_model(tmp_path / "m.pt", "cpu", "onnxruntime", precision, lambda: calibration,
                                     "synthetic crops", tmp_path / "engines")
        for domain in ("shop", "street"):
            want = embed_crops(reference, crops, [1.0], "cpu", domain=domain)
            got = embed_crops(onnx, crops, [1.0], "cpu", domain=domain)
            cos = (want * got).sum(1)
            assert cos.min() >= floor, (precision, domain, cos.min())
    folder = engine_folder(tmp_path / "m.pt", tmp_path / "engines")
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["int8"]["calibration_crops"] == 32 and meta["int8"]["calibration_source"] == "synthetic crops"
    assert set(meta["int8"]["files"]) == set(meta["files"]) == ({"shop", "street"} if streams == "domain" else {"shop"})
    made = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    load_descriptor_model(tmp_path / "m.pt", "cpu", "onnxruntime", "int8", list, "", tmp_path / "engines")
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == made   # kept: not exported again


def test_what_the_engine_cannot_run_is_refused(tmp_path):
    from detret.retrieval.foundation import FoundationSpec, materialise
    from detret.retrieval.foundation.sources import locate
    from tests.retrieval.tiny_foundation import save_timm_file

    torch.manual_seed(0)
    save_checkpoint(tmp_path / "m.pt", build_retrieval_net("resnet18", dim=8, pretrained=False, image_size=32))
    with pytest.raises(InputError, match="int8 quantization needs gallery crops"):
        load_descriptor_model(tmp_path / "m.pt", "cpu", "onnxruntime", "int8", list, "", tmp_path / "e")
    spec = FoundationSpec.parse("timm:test_vit")
    folder = materialise(spec, locate(spec, save_timm_file(tmp_path / "test_vit.pth")), tmp_path / "kept").path
    with pytest.raises(InputError, match="a foundation model runs on the torch engine"):
        load_descriptor_model(folder, "cpu", "onnxruntime", "fp32", list, "", tmp_path / "e")
