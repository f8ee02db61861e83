"""embed: batched channels-last bf16-autocast embedding against a per-image eager fp32 loop with the
same model and crops; reports the lowest cosine similarity between them."""
from __future__ import annotations

from typing import Dict

import numpy as np

from .common import best_of


def bench_embed(args) -> Dict:
    """detret's batched (channels-last, inference mode, bf16 autocast) embedding of crops vs a
    plain per-image eager fp32 loop with the same model, crops and resolution. Decoding is
    left out of both (the crops are in memory), so this measures the network side only."""
    import torch

    from detret.embed.inference import embed_crops
    from detret.retrieval.model import build_retrieval_net
    from detret.retrieval.preprocess import resize_normalise, to_tensor

    torch.manual_seed(0)
    model = build_retrieval_net(args.arch, dim=512, pretrained=False, image_size=args.size, resize="square").eval()
    rng = np.random.default_rng(2)
    crops = [rng.integers(0, 255, (int(rng.integers(200, 400)), int(rng.integers(150, 300)), 3), dtype=np.uint8)
             for _ in range(args.images)]
    meta = model.meta

    def baseline():
        out = []
        with torch.no_grad():
            for c in crops:
                x = resize_normalise(to_tensor(c), meta["image_size"], meta["resize"], meta["mean"], meta["std"])
                out.append(model(x[None])[0])
        return torch.stack(out)

    def batched(precision):
        parts = [embed_crops(model, crops[i:i + args.batch], (1.0,), "cpu", precision)
                 for i in range(0, len(crops), args.batch)]
        return torch.cat(parts)

    ref = baseline()
    cos_fp32 = float((ref * batched("fp32")).sum(1).min())
    cos_bf16 = float((ref * batched("bf16")).sum(1).min())
    t = best_of({"base": baseline, "fp32": lambda: batched("fp32"), "bf16": lambda: batched("bf16")}, args.repeat)
    t_base, t_fp32, t_bf16 = t["base"], t["fp32"], t["bf16"]
    return {"benchmark": "embed", "architecture": args.arch, "image_size": args.size, "images": args.images,
            "batch": args.batch, "baseline_per_image_fp32_s": t_base, "batched_fp32_s": t_fp32,
            "batched_bf16_s": t_bf16, "speedup_fp32": t_base / t_fp32, "speedup_bf16": t_base / t_bf16,
            "images_per_s_bf16": args.images / t_bf16, "min_cosine_fp32": cos_fp32, "min_cosine_bf16": cos_bf16}
