"""A catalogue made from a foundation model alone (no trained run): with the pipeline's detector it crops,
serves searches, shop the look and `query`; without a detector (`--crops whole`) it embeds given boxes or whole
photos and asks each search for its category. Stored vectors are checked against the library's own
computation on the recorded crops."""
import json

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from detret.catalogue.add import add_products
from detret.catalogue.binding import read_card
from detret.catalogue.create import FoundationChoice, create_catalogue
from detret.cli.app import main
from detret.detect.masks import CropShape
from detret.data.images import read_rgb
from detret.errors import InputError
from detret.retrieval.preprocess import crop_rgb
from detret.serve.app import create_app
from tests.retrieval import tiny_foundation as tiny

from .helpers import demo_images, index_vectors, link_photos, photo_rows, write_products_csv

pytest.importorskip("open_clip")


def _open_clip_reference(source, crops):
    import open_clip

    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{source}")
    with torch.no_grad():
        return model.eval().encode_image(torch.stack([preprocess(Image.fromarray(c)) for c in crops]),
                                         normalize=True).numpy()


def _products(pcfg, folder, per_category=3):
    """A product list of demo shop photos: ``per_category`` photos of two categories, one product each."""
    from detret.embed.artifact import read_descriptors

    _, rows = read_descriptors(__import__("pathlib").Path(pcfg.run_dir) / "embed-tri-crops", "gallery")
    chosen = {}
    for r in rows:
        if len(chosen.setdefault(r.category, [])) < per_category:
            chosen[r.category].append(r.photo_id)
        if len(chosen) == 2 and all(len(v) == per_category for v in chosen.values()):
            break
    chosen = dict(list(chosen.items())[:2])
    link_photos(pcfg, folder, [p for ids in chosen.values() for p in ids])
    lines = [f"shop_{p}.jpg,P{p},{cat},,Product {p}," for cat, ids in chosen.items() for p in ids]
    return write_products_csv(folder, lines), chosen


def _check_vectors(root, source, chosen):
    rows = {r["photo_id"]: r for r in photo_rows(root)}
    for category in chosen:
        stored = index_vectors(root, category)
        ids = sorted(stored)
        crops = []
        for pid in ids:
            r = rows[pid]
            box = tuple(json.loads(r["box_xyxy"]))
            crops.append(crop_rgb(read_rgb(root / r["file"]), box))
        np.testing.assert_allclose(np.stack([stored[i] for i in ids]), _open_clip_reference(source, crops),
                                   atol=2e-5)
    return rows


def test_a_foundation_model_alone_serves_a_catalogue_with_the_detector(demo_quick, tmp_path, capsys):
    _, result = demo_quick
    from detret.config.pipeline import load_pipeline_config

    pcfg = load_pipeline_config(result["config"], ["device=cpu"])
    saved = tiny.save_open_clip(tmp_path / "tiny-clip")
    root = tmp_path / "cat"
    with pytest.raises(SystemExit) as exc:
        main(["--config", str(result["config"]), "--set", "device=cpu", "catalogue", "create", str(root),
              "--descriptor", "open_clip:tiny-clip", "--weights", str(saved)])
    assert exc.value.code in (0, None), capsys.readouterr()
    card = read_card(root)
    assert card.detector is not None and card.dim == 24 and card.run == "open_clip:tiny-clip"
    assert card.descriptor.models[0]["checkpoint"].endswith(".foundation")
    csv, chosen = _products(pcfg, tmp_path / "products")
    report = add_products(root, csv)
    assert report.added == 6 and not report.unreadable
    rows = _check_vectors(root, saved, chosen)
    assert {r["rule"] for r in rows.values()} <= {"detection", "fallback"}
    category, first = next(iter(chosen.items()))
    photo = demo_images(pcfg) / f"{first[0]:09d}.jpg"
    with TestClient(create_app(root)) as client:
        answer = client.post("/api/search", files={"photo": ("p.jpg", photo.read_bytes(), "image/jpeg")},
                             data={"category": category, "k": "3"})
        assert answer.status_code == 200
        hit = answer.json()["garments"][0]["results"][0]
        assert hit["product"] == f"P{first[0]}" and hit["score"] == pytest.approx(1.0, abs=1e-4)
        look = client.post("/api/search", files={"photo": ("p.jpg", photo.read_bytes(), "image/jpeg")})
        assert look.status_code == 200   # shop the look: the detector's garments (maybe none on synthetic data)
        assert client.get("/").status_code == 200
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["query", str(photo), "--catalogue", str(root), "--category", category, "--k", "2"])
    assert exc.value.code in (0, None)
    assert f"P{first[0]}" in capsys.readouterr().out


def test_without_a_detector_photos_are_whole_and_searches_name_a_category(demo_quick, tmp_path):
    _, result = demo_quick
    from detret.config.pipeline import load_pipeline_config

    pcfg = load_pipeline_config(result["config"], ["device=cpu"])
    saved = tiny.save_open_clip(tmp_path / "tiny-clip")
    root = tmp_path / "cat"
    create_catalogue(pcfg, root, None, foundation=FoundationChoice("open_clip:tiny", saved, detector=False))
    card = read_card(root)
    assert card.detector is None and card.crop["policy"] == "full"
    assert not (root / "models" / "detector.pth").exists()
    csv, chosen = _products(pcfg, tmp_path / "products", per_category=2)
    assert add_products(root, csv).added == 4
    rows = _check_vectors(root, saved, chosen)
    for r in rows.values():
        assert r["rule"] == "full" and json.loads(r["box_xyxy"]) == [0.0, 0.0, r["width"], r["height"]]
    category, first = next(iter(chosen.items()))
    photo = (demo_images(pcfg) / f"{first[0]:09d}.jpg").read_bytes()
    with TestClient(create_app(root)) as client:
        refused = client.post("/api/search", files={"photo": ("p.jpg", photo, "image/jpeg")})
        assert refused.status_code == 400 and "no detector" in refused.json()["error"]
        answer = client.post("/api/search", files={"photo": ("p.jpg", photo, "image/jpeg")},
                             data={"category": category})
        assert answer.status_code == 200 and answer.json()["garments"][0]["rule"] == "full"


def test_create_takes_a_run_or_a_foundation_model(demo_quick, tmp_path):
    _, result = demo_quick
    from detret.config.pipeline import load_pipeline_config

    pcfg = load_pipeline_config(result["config"], ["device=cpu"])
    with pytest.raises(InputError, match="one of them"):
        create_catalogue(pcfg, tmp_path / "a", None)
    with pytest.raises(InputError, match="needs the detector"):
        FoundationChoice("open_clip:x", detector=False, crop=CropShape("mask"))
    with pytest.raises(InputError, match="crop 'boxes'"):
        CropShape("boxes")
    with pytest.raises(InputError, match="needs --run"):
        create_catalogue(pcfg, tmp_path / "b", None, import_gallery=True, foundation=FoundationChoice("hf:x/y"))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
