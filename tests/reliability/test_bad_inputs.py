"""Dirty data injected into the embedded dataset, then crop -> embed -> search -> eval.

Every photo that cannot be used is skipped with its reason, listed in the stage's
artifact, counted, and left out of the metrics as documented (README, "Failure
behaviour"); photos in odd but valid formats are used; the run goes on.
"""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from detret.config.pipeline import load_pipeline_config
from detret.data.street2shop import load_street2shop
from detret.detect.artifact import read_artifact
from detret.detect.stage import run_detect
from detret.embed.artifact import read_descriptors, read_skipped
from detret.embed.stage import run_embed
from detret.evaluate.stage import run_eval
from detret.retrieval.model import build_retrieval_net, save_checkpoint
from detret.search.stage import run_search


def _photo(root, pid):
    return root / "images" / f"{pid:09d}.jpg"


@pytest.fixture(scope="module")
def dirty(tmp_path_factory):
    from detret.data.synth.generate import SynthConfig, generate

    out = tmp_path_factory.mktemp("dirty")
    generate(SynthConfig(seed=5, n_products=24, n_distractors=8, n_modanet_train=2, n_modanet_val=1), out)
    root = out / "street2shop"
    meta = root / "meta" / "json"
    data = load_street2shop(root)
    cats = list(data.categories)
    # A category whose gallery is empty, and one without test queries.
    no_gallery = next(c for c in cats if any(q.category == c for q in data.test_queries))
    no_queries = next(c for c in cats if c != no_gallery)
    (meta / f"retrieval_{no_gallery}.json").write_text("[]")
    (meta / f"test_pairs_{no_queries}.json").write_text("[]")
    # Photos of the remaining galleries: distinct shop-only photos, to damage or re-encode.
    street_ids = {q.photo_id for q in data.train_queries + data.test_queries}
    by_cat = [[s for s in data.gallery[c] if s.photo_id not in street_ids] for c in cats
              if c not in (no_gallery, no_queries)]
    shop = [column[i] for i in range(max(map(len, by_cat))) for column in by_cat if i < len(column)]  # round-robin
    picked = dict(zip(["truncated", "html", "missing", "tiny", "gray", "cmyk", "png16", "alpha", "exif"], shop))
    p = {k: _photo(root, s.photo_id) for k, s in picked.items()}
    p["truncated"].write_bytes(p["truncated"].read_bytes()[:300])
    p["html"].write_bytes(b"<html><body>404 Not Found</body></html>")
    p["missing"].unlink()
    Image.new("RGB", (3, 3), (200, 10, 10)).save(p["tiny"], format="JPEG")
    rgb = lambda k: Image.open(p[k]).convert("RGB")  # noqa: E731
    rgb("gray").convert("L").save(p["gray"], format="JPEG")
    rgb("cmyk").convert("CMYK").save(p["cmyk"], format="JPEG")
    arr16 = (np.asarray(rgb("png16").convert("L"), np.uint16) * 257)
    Image.fromarray(arr16).save(p["png16"], format="PNG")  # a 16-bit PNG behind a .jpg name
    rgb("alpha").convert("RGBA").save(p["alpha"], format="PNG")
    upright = rgb("exif")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    upright.transpose(Image.Transpose.ROTATE_90).save(p["exif"], format="JPEG", exif=exif.tobytes())
    # A duplicated gallery record, a truncated street photo, a zero-size box, a box outside the photo.
    dup_cat = picked["gray"].category
    records = json.loads((meta / f"retrieval_{dup_cat}.json").read_text())
    (meta / f"retrieval_{dup_cat}.json").write_text(json.dumps(records + records[:1]))
    queries = [q for q in data.test_queries if q.category not in (no_gallery, no_queries)]
    q_trunc = queries[0]
    _photo(root, q_trunc.photo_id).write_bytes(_photo(root, q_trunc.photo_id).read_bytes()[:400])
    edited = {}
    for q, bbox in ((queries[-1], {"left": 10, "top": 10, "width": 0, "height": 30}),
                    (queries[-2], {"left": 5000, "top": 5000, "width": 40, "height": 40})):
        path = meta / f"test_pairs_{q.category}.json"
        recs = edited.get(path) or json.loads(path.read_text())
        recs[q.record]["bbox"] = bbox
        edited[path] = recs
    for path, recs in edited.items():
        path.write_text(json.dumps(recs))
    torch.manual_seed(0)
    ckpt = out / "m.pt"
    save_checkpoint(ckpt, build_retrieval_net("resnet18", dim=16, pretrained=False, image_size=64, resize="square"))
    pcfg = load_pipeline_config(out / "detret.yaml", ["device=cpu", f"run_dir={out / 'run'}"])
    return {"pcfg": pcfg, "root": root, "picked": picked, "q_trunc": q_trunc, "no_gallery": no_gallery,
            "no_queries": no_queries, "ckpt": ckpt, "zero_box": queries[-1], "outside_box": queries[-2]}


def test_loader_counts_the_annotation_quirks(dirty):
    data = load_street2shop(dirty["root"])
    assert data.report.repeated_gallery_records == 1 and data.report.zero_size_boxes == 1
    assert data.gallery[dirty["no_gallery"]] == []
    assert not [q for q in data.test_queries if q.category == dirty["no_queries"]]


def test_stages_skip_unusable_photos_with_reasons_and_go_on(dirty):
    pcfg, picked = dirty["pcfg"], dirty["picked"]
    run = run_detect(pcfg, "street", run_detector=False)
    street = {(r.category, r.photo_id, r.record): r for r in read_artifact(pcfg.run_dir + "/detect-street-test/detections.jsonl")}
    q = dirty["q_trunc"]
    assert street[(q.category, q.photo_id, q.record)].status == "skipped"
    assert sum(row["skipped"] for row in run.values()) >= 1
    for query in (dirty["zero_box"], dirty["outside_box"]):  # boxes that cannot be cut: the whole photo
        assert street[(query.category, query.photo_id, query.record)].crop.rule == "fallback"

    summary = run_embed(pcfg, models=[str(dirty["ckpt"])], name="m", gallery_crops="full", workers=0)
    folder = f"{pcfg.run_dir}/embed-m"
    skipped = read_skipped(folder)
    reasons = {(s["side"], s["photo_id"]): s["reason"] for s in skipped}
    expected = {"truncated": "corrupt or truncated", "html": "not an image", "missing": "missing file",
                "tiny": "too small"}
    for name, text in expected.items():
        assert text in reasons[("gallery", picked[name].photo_id)], (name, reasons)
    assert "corrupt or truncated" in reasons[("queries", q.photo_id)]
    assert summary["skipped"] == len(skipped)  # one line per skipped row (a street photo may hold two queries)
    _, grows = read_descriptors(folder, "gallery")
    used = {r.photo_id for r in grows}
    for name in ("gray", "cmyk", "png16", "alpha", "exif"):  # odd formats are read, not skipped
        assert picked[name].photo_id in used, name
    assert not {picked[n].photo_id for n in expected} & used

    search = run_search(pcfg, "m", k=5, use_gpu=False)
    assert dirty["no_gallery"] in search["empty_categories"]
    results = run_eval(pcfg, ["m"])["m"]
    per_cat = results["per_category"]
    assert per_cat[q.category]["queries_unreadable"] >= 1
    assert results["unreadable"] == {"gallery": sum(1 for s in skipped if s["side"] == "gallery"),
                                     "queries": sum(1 for s in skipped if s["side"] == "queries")}
    for name in expected:  # per category where the category has queries; always in the totals above
        if picked[name].category in per_cat:
            assert per_cat[picked[name].category]["gallery_unreadable"] >= 1
    assert all(picked[name].category in per_cat for name in expected)
    # the category without gallery: every query counted and excluded, no NaN anywhere
    row = per_cat[dirty["no_gallery"]]
    assert row["queries_without_positive"] == row["queries"] > 0 and row["gallery"] == 0
    assert dirty["no_queries"] not in per_cat or per_cat[dirty["no_queries"]]["queries"] == 0
    text = json.dumps(results)
    assert "NaN" not in text and "Infinity" not in text
