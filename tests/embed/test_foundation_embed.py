"""`embed --descriptor`: a foundation model as a Table 1 column beside trained runs, alone or in an ensemble
with a trained checkpoint; rows checked against the library's own computation on the same crops."""
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from detret.cli.app import main
from detret.config.pipeline import load_pipeline_config
from detret.data.images import read_rgb
from detret.embed.artifact import read_descriptors
from detret.evaluate.stage import run_eval
from detret.retrieval.preprocess import crop_rgb
from detret.search.stage import run_search
from tests.retrieval import tiny_foundation as tiny

pytest.importorskip("transformers")


def _hf_reference(source, photos):
    from transformers import AutoImageProcessor, AutoModel

    model, processor = AutoModel.from_pretrained(str(source)).eval(), AutoImageProcessor.from_pretrained(str(source))
    with torch.no_grad():
        x = processor(images=[Image.fromarray(p) for p in photos], return_tensors="pt")["pixel_values"]
        return F.normalize(model(pixel_values=x).pooler_output, dim=1).numpy()


def test_a_foundation_model_is_a_column_beside_trained_runs(demo_quick, tmp_path, capsys):
    _, result = demo_quick
    demo_run = Path(result["run_dir"])
    saved = tiny.save_hf_dinov2(tmp_path / "dinov2-tiny")
    overrides = ["device=cpu", f"run_dir={tmp_path / 'run'}"]
    with pytest.raises(SystemExit) as exc:
        main(["--config", str(result["config"]), *sum((["--set", o] for o in overrides), []), "embed",
              "--descriptor", "hf:tiny-dinov2", "--weights", str(saved), "--name", "zs", "--gallery-crops", "full",
              "--workers", "0"])
    assert exc.value.code in (0, None), capsys.readouterr()
    pcfg = load_pipeline_config(result["config"], overrides)
    images = Path(pcfg.data.street2shop.root) / "images"
    for side in ("gallery", "queries"):
        desc, rows = read_descriptors(tmp_path / "run" / "embed-zs", side)
        pick = list(range(0, len(rows), max(1, len(rows) // 4)))[:4]
        photos = [crop_rgb(read_rgb(images / f"{rows[i].photo_id:09d}.jpg"), rows[i].box_xyxy) for i in pick]
        np.testing.assert_allclose(desc[pick], _hf_reference(saved, photos), atol=2e-5)
    # an ensemble of a trained checkpoint and the foundation model: the normalised concatenation of the two
    trained = demo_run / "retrieval-tri-crops" / "model.pt"
    from detret.embed.stage import run_embed

    run_embed(pcfg, models=[str(trained)], name="tri", gallery_crops="full", workers=0)
    run_embed(pcfg, models=[str(trained), "hf:tiny-dinov2"], weights=saved, name="tri+zs", gallery_crops="full",
              workers=0)
    single = [read_descriptors(tmp_path / "run" / f"embed-{n}", "gallery")[0] for n in ("tri", "zs")]
    both, _ = read_descriptors(tmp_path / "run" / "embed-tri+zs", "gallery")
    expected = F.normalize(torch.from_numpy(np.concatenate(single, axis=1)), dim=1).numpy()
    np.testing.assert_allclose(both, expected, atol=1e-6)
    for name in ("zs", "tri", "tri+zs"):
        run_search(pcfg, name, k=20, use_gpu=False)
    metrics = run_eval(pcfg, ["tri", "zs", "tri+zs"], ks=(1, 20), bootstrap=50)
    assert set(metrics) == {"tri", "zs", "tri+zs"}
    assert "| tri | zs | tri+zs |" in (tmp_path / "run" / "eval" / "table.md").read_text()
