"""A catalogue's models on ONNX Runtime: `catalogue engine` exports the bundle, a process that cannot import
Detectron2 serves the catalogue from it with the torch engine's answers, and `catalogue add --engine` adds photos
whose vectors are the torch engine's up to int8's rounding."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from detret.catalogue.binding import read_card
from detret.embed.artifact import read_descriptors
from detret.serve.engine import Job, SearchEngine
from tests.helpers import copy_catalogue

SERVE_WITHOUT_DETECTRON2 = textwrap.dedent("""
    import json, sys
    sys.modules["detectron2"] = None          # any import of Detectron2 now fails
    from fastapi.testclient import TestClient
    from detret.config.choices import EngineChoice
    from detret.serve.app import create_app
    cat, photos = sys.argv[1], json.loads(sys.argv[2])
    app = create_app(cat, engine_choice=EngineChoice("onnxruntime", sys.argv[3]))
    out = []
    with TestClient(app) as client:
        for path, category in photos:
            fields = {"k": "10", **({"category": category} if category else {})}
            r = client.post("/api/search", files={"photo": ("q.jpg", open(path, "rb").read(), "image/jpeg")},
                            data=fields)
            assert r.status_code == 200, r.text
            out.append(r.json()["garments"])
    print(json.dumps({"garments": out, "torch_loaded": "torch" in sys.modules,
                      "detectron2_loaded": sys.modules.get("detectron2") is not None}))
""")


def _cli(*args):
    done = subprocess.run([sys.executable, "-m", "detret", *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _queries(pcfg, n):
    _, rows = read_descriptors(Path(pcfg.run_dir) / "embed-tri-crops", "queries")
    images = Path(pcfg.data.street2shop.root) / "images"
    return [(str(images / f"{r.photo_id:09d}.jpg"), r.category if i % 2 else None) for i, r in enumerate(rows[:n])]


def test_a_bundle_serves_the_catalogue_without_detectron2(demo_catalogue, tmp_path):
    root, pcfg = demo_catalogue
    cat = copy_catalogue(root, tmp_path / "cat")
    out = _cli("catalogue", "engine", str(cat), "--precision", "int8", "--detector-precision", "fp32")
    bundle = json.loads((cat / "engines" / "bundle-onnxruntime-int8.json").read_text())
    assert bundle["format"] == "detret.engine-bundle/1" and bundle["detector_precision"] == "fp32"
    assert bundle["catalogue_identity"] == read_card(cat).identity and '"bundle"' in out
    assert (cat / "engines" / bundle["detector"] / "detector.onnx").is_file()
    assert all((cat / "engines" / d / "shop.int8.onnx").is_file() for d in bundle["descriptors"])

    queries = _queries(pcfg, 8)
    # fp32 from the bundle (its int8 descriptors are checked against torch's in tests/retrieval/test_onnx_engine.py;
    # on this barely trained demo model they keep cosine >= 0.98, on the full demo's >= 0.996: docs/engines.md)
    done = subprocess.run([sys.executable, "-c", SERVE_WITHOUT_DETECTRON2, str(cat), json.dumps(queries), "fp32"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    served = json.loads(done.stdout.strip().splitlines()[-1])
    assert not served["detectron2_loaded"] and served["torch_loaded"]   # torch: the descriptors' preprocessing

    reference = SearchEngine(cat)   # the torch engine, in this process
    from detret.data.images import read_rgb

    want = reference.run([Job(read_rgb(Path(p)), c, None, 10) for p, c in queries])
    for w, got in zip(want, served["garments"]):
        assert [g["category"] for g in w["garments"]] == [g["category"] for g in got]
        for a, b in zip(w["garments"], got):
            assert np.allclose(a["box_xyxy"], b["box_xyxy"], atol=0.5)
            assert [r["product"] for r in a["results"]] == [r["product"] for r in b["results"]]
            assert np.allclose([r["score"] for r in a["results"]], [r["score"] for r in b["results"]], atol=1e-4)


def test_add_on_onnxruntime_stores_the_torch_engines_vectors(demo_catalogue, tmp_path):
    root, pcfg = demo_catalogue
    cat = copy_catalogue(root, tmp_path / "cat")
    images = Path(pcfg.data.street2shop.root) / "images"
    _, rows = read_descriptors(Path(pcfg.run_dir) / "embed-tri-crops", "queries")
    lines = [f"{images / f'{r.photo_id:09d}.jpg'},new-{r.photo_id},{r.category}\n" for r in rows[:6]]
    (tmp_path / "new.csv").write_text("photo,product,category\n" + "".join(lines))
    report = json.loads(_cli("catalogue", "add", str(cat), str(tmp_path / "new.csv"), "--engine", "onnxruntime",
                             "--duplicates", "off"))
    assert report["added"] == 6, report
    from detret.data.images import read_rgb

    photos = [read_rgb(Path(line.split(",")[0])) for line in lines]
    # the stored vectors are the torch engine's: each new photo, searched with torch, finds itself at cosine ~1
    results = SearchEngine(cat).run([Job(p, r.category, None, 1) for p, r in zip(photos, rows)])
    for r, res in zip(rows, results):
        best = res["garments"][0]["results"][0]
        assert best["product"] == f"new-{r.photo_id}" and best["score"] >= 0.999, best
    assert (cat / "engines").is_dir() and not list((cat / "engines").glob("bundle-*"))   # made on first use
