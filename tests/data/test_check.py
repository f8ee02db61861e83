"""`detret data check` on datasets with injected defects."""
import json
import shutil

import pytest

from detret.cli.app import main
from detret.data.check import check_dataset


@pytest.fixture
def damaged(synth_small, tmp_path):
    out, _, _ = synth_small
    root = tmp_path / "s2s"
    shutil.copytree(out / "street2shop", root)
    meta = root / "meta/json"
    hats = json.loads((meta / "test_pairs_hats.json").read_text())
    missing = hats[0]["photo"]
    (root / "images" / f"{missing:09d}.jpg").unlink()
    gallery = json.loads((meta / "retrieval_bags.json").read_text())
    corrupt = gallery[0]["photo"]
    (root / "images" / f"{corrupt:09d}.jpg").write_bytes(b"\xff\xd8\xff garbage")
    tops = json.loads((meta / "test_pairs_tops.json").read_text())
    tops[0]["bbox"]["left"] = 5000
    (meta / "test_pairs_tops.json").write_text(json.dumps(tops))
    (meta / "test_pairs_belts.json").write_text("[]")
    return root, missing, corrupt


def test_street2shop_problems_found(damaged):
    root, missing, corrupt = damaged
    report = check_dataset("street2shop", root, workers=2)
    assert not report["ok"]
    assert report["photos"]["missing"] == 1 and report["photos"]["undecodable"] == 1
    cats = report["categories"]
    assert cats["hats"]["missing_photos"] == 1
    assert cats["bags"]["undecodable_photos"] == 1
    assert cats["tops"]["boxes_outside_photo"] == 1
    assert cats["belts"]["test_queries"] == 0
    text = "\n".join(report["problems"])
    assert f"{missing:09d}.jpg: missing file" in text
    assert f"{corrupt:09d}.jpg: " in text and "category belts has no test query" in text
    assert "tops box" in text
    headers_only = check_dataset("street2shop", root, decode=False, workers=2)
    assert headers_only["photos"]["missing"] == 1


def test_clean_synthetic_datasets_pass(synth_small):
    out, cfg, summary = synth_small
    s2s = check_dataset("street2shop", out / "street2shop", workers=2)
    assert s2s["ok"], s2s["problems"]
    assert s2s["totals"]["test_queries"] == sum(r["test_pairs"] for r in summary["street2shop"].values())
    modanet = check_dataset("modanet", out / "modanet", workers=2)
    assert modanet["ok"] and modanet["totals"]["annotations"] == summary["modanet"]["train"]["annotations"]


def test_modanet_size_mismatch_reported(synth_small, tmp_path):
    out, _, _ = synth_small
    root = tmp_path / "modanet"
    shutil.copytree(out / "modanet", root)
    path = root / "annotations/modanet2018_instances_train.json"
    doc = json.loads(path.read_text())
    doc["images"][0]["width"] += 10
    path.write_text(json.dumps(doc))
    report = check_dataset("modanet", root, decode=False)
    assert not report["ok"] and "but the annotations say" in report["problems"][0]


def test_deepfashion2_check(realdata, tmp_path):
    from PIL import Image

    split = tmp_path / "validation"
    (split / "annos").mkdir(parents=True)
    (split / "image").mkdir()
    shutil.copy(realdata / "deepfashion2/annos_000001.json", split / "annos/000001.json")
    Image.new("RGB", (468, 624)).save(split / "image/000001.jpg")
    report = check_dataset("deepfashion2", tmp_path, split="validation")
    assert report["ok"], report["problems"]
    assert report["categories"]["short_sleeved_shirt"]["consumer_queries_without_positive"] == 1
    Image.new("RGB", (300, 300)).save(split / "image/000001.jpg")
    report = check_dataset("deepfashion2", tmp_path, split="validation")
    assert not report["ok"] and "lies outside the photo" in report["problems"][0]


def test_cli_json_and_strict(damaged, capsys):
    root, _, _ = damaged
    with pytest.raises(SystemExit) as exc:
        main(["data", "check", "--dataset", "street2shop", "--root", str(root), "--json", "--strict"])
    assert exc.value.code == 1
    report = json.loads(capsys.readouterr().out)
    assert report["photos"]["missing"] == 1
    with pytest.raises(SystemExit) as exc:
        main(["data", "check", "--dataset", "street2shop", "--root", str(root), "--no-decode"])
    assert exc.value.code in (0, None)
    printed = capsys.readouterr().out
    assert "hats" in printed and "problem(s)" in printed
