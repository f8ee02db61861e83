"""Post-installation check: the libraries detret stands on import and work.

Run by tools/install.sh; exits non-zero with the reason when something is off.
Builds a Mask R-CNN from Detectron2's own model-zoo config (random weights, on
the CPU) and runs it on one blank image, and runs one exact FAISS search.
"""
from __future__ import annotations

import sys


def main() -> int:
    import numpy as np
    import torch

    import detectron2
    from detectron2 import model_zoo
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    cfg = get_cfg()
    cfg.merge_from_file(model_zoo.get_config_file("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.RESNETS.DEPTH = 50
    model = build_model(cfg).eval()
    with torch.inference_mode():
        out = model([{"image": torch.zeros(3, 64, 96, dtype=torch.uint8), "height": 64, "width": 96}])
    assert "instances" in out[0], "Mask R-CNN returned no instances field"

    from detret.search.faiss_lib import faiss, faiss_blas_core

    xb = np.random.default_rng(0).standard_normal((100, 16)).astype("float32")
    index = faiss.IndexFlatIP(16)
    index.add(xb)
    _, ids = index.search(xb[:5], 1)
    assert (ids[:, 0] == np.arange(5)).all(), "FAISS exact search did not find the query itself"

    import detret

    print(
        f"ok: detret {detret.__version__}, detectron2 {detectron2.__version__}, torch {torch.__version__}, "
        f"faiss {faiss.__version__} ({faiss.get_num_gpus()} GPU, BLAS kernels {faiss_blas_core()}), cuda available: {torch.cuda.is_available()}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
