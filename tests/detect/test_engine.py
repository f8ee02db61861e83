"""The detector on ONNX Runtime: Detectron2's resize, post-processing and mask pasting redone without it (checked
against Detectron2's own functions), the exported demo detector giving Detectron2's detections, int8 keeping most
crops, and `detect --engine onnxruntime` writing the torch engine's crops."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from detret.config.pipeline import load_pipeline_config
from detret.data.categories import load_categories
from detret.data.images import read_rgb
from detret.detect.crops import select_crop
from detret.detect.engine import FILES, engine_folder, open_detector, photos_reader, read_engine
from detret.detect.portable import graph_input, paste_mask, resized_shape
from detret.errors import InputError


def test_resize_matches_detectron2s():
    from detectron2.data import transforms as T

    from detret.detect.inference import model_input

    for h, w in ((320, 256), (256, 320), (100, 1000), (999, 17), (256, 256), (1, 5)):
        assert resized_shape(h, w, 256, 512) == T.ResizeShortestEdge.get_output_shape(h, w, 256, 512)
    rgb = np.random.default_rng(0).integers(0, 256, (77, 131, 3), dtype=np.uint8)
    resize = T.ResizeShortestEdge([256, 256], 512)
    for fmt in ("BGR", "RGB"):
        assert np.array_equal(graph_input(rgb, 256, 512, fmt), model_input(rgb, resize, fmt)["image"].numpy())


def test_pasted_masks_match_detectron2s():
    from detectron2.layers.mask_ops import paste_masks_in_image

    rng = np.random.default_rng(1)
    masks = rng.random((12, 28, 28)).astype(np.float32)
    x0, y0 = rng.uniform(-10, 70, 12), rng.uniform(-10, 50, 12)
    boxes = np.stack([x0, y0, x0 + rng.uniform(0.5, 60, 12), y0 + rng.uniform(0.5, 40, 12)], 1).astype(np.float32)
    boxes[0] = (3.0, 4.0, 3.4, 4.2)   # under a pixel
    ref = paste_masks_in_image(torch.from_numpy(masks), torch.from_numpy(boxes), (60, 80), 0.5).numpy()
    ours = np.stack([paste_mask(m, b, 60, 80, 0.5) for m, b in zip(masks, boxes)])
    # the same bilinear samples summed in another order: a pixel may fall on the other side of 0.5 only at a tie
    assert ours.shape == ref.shape and (ours != ref).sum() <= 2, (ours != ref).sum()
    assert ref.sum() > 500


@pytest.fixture(scope="module")
def detector(demo_quick):
    """The quick demo's detector (trained with its mask head) as the pipeline chooses it, and gallery photos. The
    quick demo's detector is barely trained: its score threshold is lowered so that it keeps detections."""
    from detret.data.street2shop import load_street2shop
    from detret.detect.config import choose_detector
    from detret.detect.stage import gallery_paths

    _, result = demo_quick
    pcfg = load_pipeline_config(result["config"], ["device=cpu"])
    choice = choose_detector(pcfg, "cpu", ["DETRET.DETECT.MASKS", "True", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.01"])
    data = load_street2shop(Path(pcfg.data.street2shop.root), splits=())
    category = {s.photo_id: c for c in data.categories for s in data.gallery[c]}
    return pcfg, choice, gallery_paths(data), category, data, Path(result["config"])


def _engine_cfg(cfg, engine, precision):
    out = cfg.clone()
    out.defrost()
    out.DETRET.DETECT.ENGINE, out.DETRET.DETECT.PRECISION = engine, precision
    out.freeze()
    return out


def _iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return ix * iy / union if union > 0 else 1.0


def _photos(gallery):
    photos = [read_rgb(p) for p in gallery[5:41:3]]
    # sizes the trace never saw: a strip, two photos side by side, an upscaled one
    photos += [np.ascontiguousarray(photos[0][:90]), np.concatenate([photos[1], photos[2]], 1),
               np.repeat(np.repeat(photos[3], 2, 0), 2, 1)]
    return photos


def test_the_exported_detector_gives_detectron2s_detections(detector, tmp_path):
    from detret.detect.inference import detect_arrays, load_detector

    _, choice, gallery, _, _, _ = detector
    labels = load_categories().modanet
    torch_model = load_detector(choice.cfg, choice.weights, "cpu")
    cfg = _engine_cfg(choice.cfg, "onnxruntime", "fp32")
    engine = open_detector(cfg, choice.weights, "cpu", photos_reader(gallery), "test photos", under=tmp_path)
    photos = _photos(gallery)
    want = detect_arrays(torch_model, choice.cfg, photos, labels, torch.device("cpu"))
    got = [engine.detect(p) for p in photos]
    from detret.detect.masks import decode_mask

    assert sum(len(w) for w in want) > 50
    for w, g in zip(want, got):
        assert len(w) == len(g)
        for a in w:   # (detections of near-equal scores may come in another order)
            b = max((b for b in g if b.label == a.label), key=lambda b: _iou(a.box_xyxy, b.box_xyxy))
            assert _iou(a.box_xyxy, b.box_xyxy) > 0.999
            assert abs(a.score - b.score) < 1e-3 and abs(a.objectness - b.objectness) < 1e-3
            ma, mb = decode_mask(a.mask), decode_mask(b.mask)
            assert (ma & mb).sum() >= 0.98 * max((ma | mb).sum(), 1)
    folder = engine_folder(cfg, choice.weights, tmp_path)
    spec = read_engine(folder)
    assert spec["masks"] is True and spec["labels"] == list(labels) and spec["files"] == {"fp32": FILES["fp32"]}
    assert spec["outputs"] == ["boxes", "scores", "classes", "objectness", "masks"]
    graph = folder / FILES["fp32"]
    made = graph.stat().st_mtime_ns
    open_detector(cfg, choice.weights, "cpu", photos_reader([]), "no photos needed: kept", under=tmp_path)
    assert graph.stat().st_mtime_ns == made


def test_int8_keeps_most_crops_and_records_its_calibration(detector, tmp_path):
    from detret.detect.inference import detect_arrays, load_detector

    pcfg, choice, gallery, category, data, _ = detector
    cats = load_categories(pcfg.data.category_map)
    torch_model = load_detector(choice.cfg, choice.weights, "cpu")
    cfg = _engine_cfg(choice.cfg, "onnxruntime", "int8")
    engine = open_detector(cfg, choice.weights, "cpu", photos_reader(gallery), "the quick demo's shop photos",
                           under=tmp_path)
    spec = read_engine(engine_folder(cfg, choice.weights, tmp_path))
    assert spec["int8"]["calibration_photos"] == cfg.DETRET.DETECT.CALIBRATION_PHOTOS
    assert spec["int8"]["calibration_source"] == "the quick demo's shop photos"
    ids = sorted(category)[::4]
    photos = [read_rgb(data.photo_path(p)) for p in ids]
    want = detect_arrays(torch_model, choice.cfg, photos, cats.modanet, torch.device("cpu"))
    same = []
    for pid, photo, w in zip(ids, photos, want):
        size = (photo.shape[1], photo.shape[0])
        a = select_crop(w, category[pid], cats.street2shop_to_modanet, size)
        b = select_crop(engine.detect(photo), category[pid], cats.street2shop_to_modanet, size)
        same.append(_iou(a.box_xyxy, b.box_xyxy) >= 0.95)
    # int8 is not bit-exact: a crop moves where two detections' scores are within its rounding (the full demo's
    # detector: 92.7% of crops kept, tools/benchmark.py engine); the quick demo's barely trained one likewise
    assert np.mean(same) >= 0.75, np.mean(same)


def test_detect_on_onnxruntime_writes_the_torch_engines_crops(detector, tmp_path):
    import shutil

    from detret.detect.artifact import read_artifact
    from detret.detect.stage import run_detect
    from detret.runs.layout import RunLayout

    pcfg, _, _, _, _, config = detector
    trained = RunLayout(pcfg.run_dir).detector
    weights = tmp_path / "detector" / "model_final.pth"   # (its engine is kept beside it: not in the shared demo)
    weights.parent.mkdir()
    shutil.copyfile(trained / "model_final.pth", weights)
    run_dir = tmp_path / "runs"
    other = load_pipeline_config(config, [f"run_dir={run_dir}", f"detector.config_file={trained / 'config.yaml'}",
                                          f"detector.weights={weights}", "device=cpu"])
    run_detect(other, "shop", extra_opts=["DETRET.DETECT.ENGINE", "onnxruntime"])
    torch_run = {(r.category, r.photo_id): r for r in read_artifact(RunLayout(pcfg.run_dir).shop_detections)}
    ours = list(read_artifact(RunLayout(run_dir).shop_detections))
    assert len(ours) == len(torch_run) > 50
    assert any(not r.detections for r in ours)   # (photos without any detection: an empty batch in the heads)
    moved = [r for r in ours if _iou(r.crop.box_xyxy, torch_run[(r.category, r.photo_id)].crop.box_xyxy) < 0.95]
    assert len(moved) <= len(ours) // 100, [(r.photo_id, r.crop) for r in moved]
    assert all(r.crop.rule == torch_run[(r.category, r.photo_id)].crop.rule for r in ours if r not in moved)
    manifest = json.loads((RunLayout(run_dir).detect("shop", "test") / "manifest.json").read_text())
    assert "ENGINE: onnxruntime" in manifest["config"]["detector_cfg"]
    assert len(list((weights.parent / "engines").glob("detector-*/detector.onnx"))) == 1
    with pytest.raises(InputError, match="runs fp32 or bf16, not int8"):
        run_detect(other, "shop", extra_opts=["DETRET.DETECT.PRECISION", "int8"], force=True)
