"""train-detector and detect on a tiny synthetic dataset: artifacts, resume, staleness, bad photos."""
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from detret.config.pipeline import load_pipeline_config
from detret.data.street2shop import load_street2shop
from detret.detect import stage as detect_stage
from detret.detect.artifact import ARTIFACT_NAME, PARTIAL_NAME, read_artifact
from detret.detect.crops import RULES
from detret.detect.train import run_train_detector
from detret.runs.stage import StaleArtifactError, stage_status

TINY_TRAIN = ["SOLVER.MAX_ITER", "3", "SOLVER.IMS_PER_BATCH", "2", "DATALOADER.NUM_WORKERS", "0",
              "SOLVER.CHECKPOINT_PERIOD", "100"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from detret.data.synth.generate import SynthConfig, generate

    root = tmp_path_factory.mktemp("tiny")
    generate(SynthConfig(seed=5, n_products=11, n_distractors=0, n_modanet_train=12, n_modanet_val=1), root)
    pcfg = load_pipeline_config(root / "detret.yaml", ["device=cpu", "detector.opts=[DETRET.DETECT.NUM_WORKERS,0]"])
    result = run_train_detector(pcfg, opts=TINY_TRAIN, command="detret train-detector")
    return root, pcfg, result


def _cfg(root, run_dir, *extra):
    return load_pipeline_config(root / "detret.yaml", ["device=cpu", f"run_dir={run_dir}",
                                                       "detector.opts=[DETRET.DETECT.NUM_WORKERS,0]", *extra])


def test_train_writes_evaluation_and_is_reused(trained):
    root, pcfg, result = trained
    out = Path(pcfg.run_dir) / "detector"
    assert result["dataset"] == ["modanet_holdout"] and "bbox" in result["results"]
    assert {"AP", "AP50"} <= set(result["results"]["bbox"])
    for name in ("model_final.pth", "config.yaml", "evaluation.json", "metrics.json"):
        assert (out / name).is_file(), name
    assert stage_status(out).state == "done"
    assert json.loads((out / "evaluation.json").read_text())["results"] == result["results"]
    again = run_train_detector(pcfg, opts=TINY_TRAIN)
    assert again["results"] == result["results"]
    with pytest.raises(StaleArtifactError, match="--force"):
        run_train_detector(pcfg, opts=TINY_TRAIN[:1] + ["4"] + TINY_TRAIN[2:])


def test_detect_shop_artifact(trained):
    root, pcfg, _ = trained
    summary = detect_stage.run_detect(pcfg, "shop", command="detret detect --split shop")
    out = Path(pcfg.run_dir) / "detect-shop"
    records = list(read_artifact(out / ARTIFACT_NAME))
    data = load_street2shop(root / "street2shop", splits=())
    expected = sorted((c, s.photo_id) for c in data.categories for s in data.gallery[c])
    assert sorted((r.category, r.photo_id) for r in records) == expected
    for r in records:
        assert r.status == "ok" and r.crop.rule in RULES and r.crop.rule != "ground_truth"
        x0, y0, x1, y1 = r.crop.box_xyxy
        assert 0 <= x0 < x1 <= r.width and 0 <= y0 < y1 <= r.height
        assert all(0.0 <= d.objectness <= 1.0 and 0.0 <= d.score <= 1.0 for d in r.detections)
        if r.crop.rule == "detection":
            assert r.detections[r.crop.detection].objectness > 0.5
    counted = Counter((r.category, r.crop.rule) for r in records)
    for cat, row in summary.items():
        assert row["photos"] == sum(v for (c, _), v in counted.items() if c == cat)
        assert row["rules"].get("fallback", 0) == counted[(cat, "fallback")]
    assert not (out / PARTIAL_NAME).exists() and stage_status(out).state == "done"
    keys = [r.key for r in records]
    assert keys == sorted(keys)


def test_detect_resumes_after_interruption_with_identical_artifact(trained, tmp_path, monkeypatch):
    root, pcfg, _ = trained
    shutil.copytree(Path(pcfg.run_dir) / "detector", tmp_path / "run" / "detector")
    cfg = _cfg(root, tmp_path / "run", "detector.opts=[DETRET.DETECT.NUM_WORKERS,0,DETRET.DETECT.BATCH_SIZE,2]")
    calls = {"n": 0}
    real = detect_stage.append_partial

    def dying(path, records):
        real(path, records)
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(detect_stage, "append_partial", dying)
    with pytest.raises(KeyboardInterrupt):
        detect_stage.run_detect(cfg, "shop")
    out = tmp_path / "run" / "detect-shop"
    assert stage_status(out).state == "running" and not (out / ARTIFACT_NAME).exists()
    assert len((out / PARTIAL_NAME).read_text().splitlines()) == 6
    with open(out / PARTIAL_NAME, "a") as fh:
        fh.write('{"photo_id": 99, "wid')  # a line torn by the kill
    monkeypatch.setattr(detect_stage, "append_partial", real)
    detect_stage.run_detect(cfg, "shop")
    reference = Path(pcfg.run_dir) / "detect-shop" / ARTIFACT_NAME
    if not reference.exists():
        detect_stage.run_detect(pcfg, "shop")
    assert (out / ARTIFACT_NAME).read_bytes() == reference.read_bytes()


def test_street_ground_truth_and_bad_photo(trained, tmp_path):
    root, pcfg, _ = trained
    data_root = tmp_path / "data"
    shutil.copytree(root / "street2shop", data_root)
    queries = load_street2shop(data_root, splits=("test",)).test_queries
    broken = queries[0].photo_id
    (data_root / "images" / f"{broken:09d}.jpg").write_bytes(b"not a jpeg")
    cfg = _cfg(root, tmp_path / "run", f"data.street2shop.root={data_root}")
    summary = detect_stage.run_detect(cfg, "street", subset="test", run_detector=False)
    records = list(read_artifact(tmp_path / "run" / "detect-street-test" / ARTIFACT_NAME))
    assert len(records) == len(queries)
    skipped = [r for r in records if r.status == "skipped"]
    assert {r.photo_id for r in skipped} == {broken} and "not an image" in skipped[0].reason
    assert all(r.crop.rule == "ground_truth" for r in records if r.status == "ok")
    assert sum(row["skipped"] for row in summary.values()) == len(skipped)


def test_detect_refuses_stale_detector(trained, tmp_path):
    root, pcfg, _ = trained
    shutil.copytree(Path(pcfg.run_dir) / "detector", tmp_path / "run" / "detector")
    weights = tmp_path / "run" / "detector" / "model_final.pth"
    weights.write_bytes(weights.read_bytes() + b"\0")
    with pytest.raises(StaleArtifactError, match=r"stale.*model_final.pth.*Rerun `detret train-detector"):
        detect_stage.run_detect(_cfg(root, tmp_path / "run"), "shop")


def test_two_processes_give_the_artifact_of_one(trained, tmp_path):
    """Data-parallel detection over 2 gloo processes (Detectron2's launch) merges into the same artifact."""
    root, pcfg, _ = trained
    one, two = tmp_path / "one", tmp_path / "two"
    for run in (one, two):
        shutil.copytree(Path(pcfg.run_dir) / "detector", run / "detector")
    detect_stage.run_detect(_cfg(root, one), "shop")
    summary = detect_stage.run_detect(_cfg(root, two), "shop", num_processes=2)
    assert sorted((two / "detect-shop").glob("photos.partial*.jsonl")) == []  # caches merged and removed
    a = [r.to_json() for r in read_artifact(one / "detect-shop" / ARTIFACT_NAME)]
    b = [r.to_json() for r in read_artifact(two / "detect-shop" / ARTIFACT_NAME)]
    assert [(r["category"], r["photo_id"]) for r in a] == [(r["category"], r["photo_id"]) for r in b]
    for ra, rb in zip(a, b):
        # each process batches its own photos: equal up to float summation order
        assert len(ra["detections"]) == len(rb["detections"]) and ra["crop"]["rule"] == rb["crop"]["rule"]
        for da, db in zip(ra["detections"], rb["detections"]):
            assert da["label"] == db["label"] and abs(da["score"] - db["score"]) < 1e-3
            assert max(abs(x - y) for x, y in zip(da["box_xyxy"], db["box_xyxy"])) < 0.1
    reference = json.loads((one / "detect-shop" / "summary.json").read_text())
    assert summary.keys() == reference.keys()
    for cat, row in reference.items():
        assert {k: v for k, v in summary[cat].items() if k != "mean_score"} == \
            {k: v for k, v in row.items() if k != "mean_score"}
        assert summary[cat]["mean_score"] == pytest.approx(row["mean_score"], abs=1e-3)
    assert stage_status(two / "detect-shop").state == "done"


def test_train_detector_in_two_cpu_processes(trained, tmp_path):
    """Two gloo processes: DDP on CPU modules (Detectron2 passes device_ids, which DDP refuses
    for CPU; detret's trainer drops them), detret's ROI heads registered in the spawned
    workers, one artifact written by rank 0. Exactly equal weights to one process are not
    expected: each rank normalises its losses and batch statistics over its own images."""
    import torch

    root, pcfg, one = trained
    zero_lr = TINY_TRAIN + ["SOLVER.BASE_LR", "0.0"]
    two = run_train_detector(_cfg(root, tmp_path / "two"), opts=zero_lr, num_gpus=2)
    single = run_train_detector(_cfg(root, tmp_path / "one"), opts=zero_lr)
    out2, out1 = tmp_path / "two" / "detector", tmp_path / "one" / "detector"
    assert stage_status(out2).state == "done"
    names = {p.name for p in out2.iterdir()} - {p.name for p in out2.glob("log.txt.rank*")}
    assert names == {p.name for p in out1.iterdir()}
    # the results are plain JSON (NaN of absent labels -> null) with the same metrics as one process reports
    text = (out2 / "evaluation.json").read_text()
    assert "NaN" not in text and set(json.loads(text)["results"]["bbox"]) == set(single["results"]["bbox"])
    assert set(two["results"]["bbox"]) == set(single["results"]["bbox"])
    # same seed, rank 0's weights broadcast by DDP, rank 0 saves: with a zero learning rate
    # the two-process checkpoint is the one-process checkpoint
    w2 = torch.load(out2 / "model_final.pth", map_location="cpu", weights_only=False)["model"]
    w1 = torch.load(out1 / "model_final.pth", map_location="cpu", weights_only=False)["model"]
    assert w2.keys() == w1.keys()
    for name in w1:
        assert torch.equal(w1[name], w2[name]), name
    # and both processes trained: three iterations logged with a finite loss
    iters = [json.loads(line) for line in (out2 / "metrics.json").read_text().splitlines()
             if "total_loss" in line]
    assert [r["iteration"] for r in iters][-1] == 2 and all(np.isfinite(r["total_loss"]) for r in iters)


def test_the_summary_says_how_often_the_crop_covers_the_product():
    """covers_product: the share of a category's photos whose crop is a detection with IoU >= 0.5 against the
    product's true box, counted by hand on four photos (a fallback never covers)."""
    from detret.detect.artifact import CropRecord
    from detret.detect.crops import Crop, Detection
    from detret.detect.stage import summarise

    det = Detection((0, 0, 10, 10), "bag", 0.9, 0.9)

    def rec(photo, crop_box, rule):
        return CropRecord(photo, "shop", "bags", None, 100, 100, [det], Crop(crop_box, rule, 0 if rule == "detection"
                                                                             else None))

    records = [rec(1, (0, 0, 10, 10), "detection"),     # IoU 1
               rec(2, (0, 0, 10, 10), "detection"),     # IoU 100 / 400 = 0.25 against (0, 0, 20, 20)
               rec(3, (0, 0, 100, 100), "fallback"),    # the whole photo: not a detection
               rec(4, (0, 0, 12, 10), "detection")]     # IoU 100 / 120 = 0.83
    truth = {("bags", 1): [(0, 0, 10, 10)], ("bags", 2): [(0, 0, 20, 20)], ("bags", 3): [(0, 0, 90, 90)],
             ("bags", 4): [(0, 0, 10, 10)]}
    summary = summarise(records, truth)["bags"]
    assert summary["covers_product"] == 2 / 4 and summary["fallback_rate"] == 1 / 4
    # a pair drawn as two pieces: a crop of one shoe covers the product, a crop across both halves does not
    shoes = [(0, 0, 40, 10), (0, 0, 20, 10), (20, 0, 40, 10)]   # the pair, the left shoe, the right shoe
    pair = [rec(5, (21, 0, 40, 10), "detection"),          # IoU 19 / 20 with the right shoe
            rec(6, (10, 0, 30, 10), "detection")]          # IoU 0.5 with the pair, 1/3 with either shoe
    assert summarise(pair, {("bags", 5): shoes, ("bags", 6): shoes})["bags"]["covers_product"] == 2 / 2
    pair[1] = rec(6, (10, 0, 28, 10), "detection")          # IoU 18 / 40 = 0.45 with the pair, 10 / 28 with a shoe
    assert summarise(pair, {("bags", 5): shoes, ("bags", 6): shoes})["bags"]["covers_product"] == 1 / 2
    assert "covers_product" not in summarise(records)["bags"]  # real data: no true boxes, no such figure
