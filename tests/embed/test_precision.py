"""bf16 embedding keeps the fp32 descriptors (cosine >= 0.999)."""
import numpy as np
import pytest
import torch

from detret.embed.inference import embed_crops
from detret.retrieval.model import build_retrieval_net


def test_bf16_descriptors_match_fp32():
    torch.manual_seed(0)
    model = build_retrieval_net("resnet18", dim=64, pretrained=False, image_size=96, resize="longest").eval()
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 255, (int(rng.integers(60, 120)), int(rng.integers(50, 110)), 3), dtype=np.uint8)
             for _ in range(6)]
    fp32 = embed_crops(model, crops, (1.0,), "cpu", "fp32")
    bf16 = embed_crops(model, crops, (1.0,), "cpu", "bf16")
    assert fp32.dtype == bf16.dtype == torch.float32
    assert (fp32 * bf16).sum(1).min().item() >= 0.999
    single = torch.cat([embed_crops(model, [c], (1.0,), "cpu", "fp32") for c in crops])
    assert torch.allclose(single, fp32, atol=1e-5)  # batching by shape changes nothing


def test_unknown_precision_is_refused(tmp_path):
    from detret.config.pipeline import load_pipeline_config
    from detret.embed.stage import run_embed

    cfg = load_pipeline_config(None, [f"run_dir={tmp_path}", "data.street2shop.root=/nonexistent"], cwd=tmp_path)
    with pytest.raises(ValueError, match="precision"):
        run_embed(cfg, models=["x"], precision="fp8")
