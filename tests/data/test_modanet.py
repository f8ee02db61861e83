"""ModaNet loader, holdout split and Detectron2 registration on real annotation records."""
import json

import numpy as np
import pytest

from detret.config.pipeline import load_pipeline_config
from detret.data.modanet import holdout_split, load_modanet, load_or_create_split
from detret.data.register import dataset_dicts, register_datasets


@pytest.fixture(scope="module")
def subset(realdata):
    path = realdata / "modanet/instances_subset.json"
    return path, json.loads(path.read_text())


def _independent_boxes(raw, from_polygons):
    """Expected kept boxes per image, computed straight from the JSON with numpy."""
    sizes = {im["id"]: (im["width"], im["height"]) for im in raw["images"]}
    out = {}
    for a in raw["annotations"]:
        w, h = sizes[a["image_id"]]
        if from_polygons:
            pts = np.concatenate([np.reshape(p, (-1, 2)) for p in a["segmentation"] if len(p) >= 6])
            box = np.array([pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()], float)
        else:
            x, y, bw, bh = a["bbox"]
            box = np.array([x, y, x + bw, y + bh], float)
        box = np.clip(box, 0, [w, h, w, h])
        if box[2] - box[0] >= 1 and box[3] - box[1] >= 1:
            out.setdefault(a["image_id"], []).append((a["category_id"] - 1, tuple(box)))
    return out


@pytest.mark.parametrize("box_source", ["annotation", "polygon"])
def test_boxes_clipped_inside_images(subset, tmp_path, box_source):
    path, raw = subset
    dicts, report = load_modanet(path, tmp_path, box_source=box_source)
    assert len(dicts) == len(raw["images"]) == report.images
    expected = _independent_boxes(raw, box_source == "polygon")
    for rec in dicts:
        got = sorted((a["category_id"], tuple(a["bbox"])) for a in rec["annotations"])
        assert got == sorted(expected.get(rec["image_id"], []))
        for a in rec["annotations"]:
            x0, y0, x1, y1 = a["bbox"]
            assert 0 <= x0 < x1 <= rec["width"] and 0 <= y0 < y1 <= rec["height"]
            assert 0 <= a["category_id"] <= 12
        assert rec["file_name"].startswith(str(tmp_path))
    if box_source == "annotation":
        past = sum(1 for a in raw["annotations"] for im in raw["images"] if im["id"] == a["image_id"] and (
            a["bbox"][0] < 0 or a["bbox"][1] < 0 or a["bbox"][0] + a["bbox"][2] > im["width"]
            or a["bbox"][1] + a["bbox"][3] > im["height"]))
        assert report.boxes_clipped == past > 0
    else:
        assert report.boxes_from_polygons == report.annotations
    assert report.boxes_disagreeing_with_polygons > 0
    assert report.images_without_annotations == len({im["id"] for im in raw["images"]} -
                                                     {a["image_id"] for a in raw["annotations"]}) > 0


def test_official_val_file_has_no_annotations(realdata, tmp_path):
    dicts, report = load_modanet(realdata / "modanet/modanet2018_instances_val.json", tmp_path)
    assert report.images == 2799 and report.annotations == 0 and report.images_without_annotations == 2799
    assert all(d["height"] == 600 and d["width"] == 400 for d in dicts)


def test_foreign_categories_and_bad_files(tmp_path, subset):
    _, raw = subset
    other = dict(raw, categories=[dict(c, name="shirt" if c["id"] == 9 else c["name"]) for c in raw["categories"]])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(other))
    with pytest.raises(ValueError, match="not ModaNet's"):
        load_modanet(bad, tmp_path)
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_modanet(tmp_path / "nope.json", tmp_path)
    bad.write_text("[1, 2]")
    with pytest.raises(ValueError, match="bad.json"):
        load_modanet(bad, tmp_path)
    orphan = dict(raw, annotations=raw["annotations"][:3] + [dict(raw["annotations"][3], image_id=999999999)])
    bad.write_text(json.dumps(orphan))
    dicts, report = load_modanet(bad, tmp_path)
    assert report.annotations_without_image == 1 and report.annotations == 3
    bad.write_text(json.dumps(dict(raw, annotations=[dict(raw["annotations"][0], image_id="x")])))
    with pytest.raises(ValueError, match=r"annotations\[0\] \(id \d+\): image_id must be an integer"):
        load_modanet(bad, tmp_path)
    for field, value, message in (("bbox", [1, 2, 3], r"annotations\[1\] \(id \d+\): 'bbox'"),
                                  ("bbox", [1, 2, "3", 4], "'bbox' must be"),
                                  ("category_id", 14, r"category_id 14 is not in 1..13")):
        broken = dict(raw, annotations=[raw["annotations"][0], dict(raw["annotations"][1], **{field: value})])
        bad.write_text(json.dumps(broken))
        with pytest.raises(ValueError, match=message) as err:
            load_modanet(bad, tmp_path)
        assert "bad.json" in str(err.value)


def test_holdout_split_is_seeded_disjoint_and_saved(subset, tmp_path):
    path, raw = subset
    ids = [im["id"] for im in raw["images"]]
    train, hold = holdout_split(ids, 0.05, seed=0)
    assert len(hold) == round(0.05 * len(ids)) and not set(train) & set(hold)
    assert sorted(train + hold) == sorted(ids)
    assert holdout_split(ids, 0.05, seed=0) == (train, hold)
    assert holdout_split(ids, 0.05, seed=1) != (train, hold)
    split_file = tmp_path / "split.json"
    saved = load_or_create_split(split_file, path, 0.05, 0)
    assert saved == {"train": train, "holdout": hold}
    assert load_or_create_split(split_file, path, 0.05, 0) == saved  # reused
    with pytest.raises(ValueError, match="drawn with fraction 0.05, seed 0"):
        load_or_create_split(split_file, path, 0.1, 0)
    with pytest.raises(ValueError, match="strictly between"):
        holdout_split(ids, 1.0, 0)


def test_registration_in_detectron2(subset, tmp_path):
    from detectron2.data import MetadataCatalog
    from detectron2.data.datasets.coco import convert_to_coco_dict

    path, raw = subset
    cfg = load_pipeline_config(None, [f"run_dir={tmp_path / 'run'}", f"data.modanet.annotations={path}",
                                      f"data.modanet.images={tmp_path / 'images'}"], cwd=tmp_path)
    names = register_datasets(cfg)
    assert names == ["modanet_train", "modanet_holdout", "modanet_all"]
    assert register_datasets(cfg) == names  # idempotent
    train, hold, all_ = (dataset_dicts(n) for n in names)
    assert len(all_) == len(raw["images"]) == len(train) + len(hold)
    assert not {d["image_id"] for d in train} & {d["image_id"] for d in hold}
    assert (tmp_path / "run/data/modanet_split.json").is_file()
    meta = MetadataCatalog.get("modanet_holdout")
    assert meta.thing_classes[0] == "bag" and len(meta.thing_classes) == 13 and meta.evaluator_type == "coco"
    # Detectron2's own COCO conversion (what COCOEvaluator uses) accepts the records.
    coco = convert_to_coco_dict("modanet_holdout")
    assert len(coco["images"]) == len(hold)
    assert len(coco["annotations"]) == sum(len(d["annotations"]) for d in hold)
    with pytest.raises(KeyError, match="registered: .*modanet_all"):
        dataset_dicts("modanet_val")


def test_synthetic_modanet_loads(synth_small):
    out, cfg, summary = synth_small
    dicts, report = load_modanet(out / "modanet/annotations/modanet2018_instances_train.json", out / "modanet/images")
    assert report.annotations == summary["modanet"]["train"]["annotations"]
    assert report.boxes_dropped_degenerate == 0
    assert all((out / "modanet/images" / d["file_name"].split("/")[-1]).is_file() for d in dicts)
