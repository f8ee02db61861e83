"""The crop policy on hand-made detections: every branch, ties, boxes outside the photo."""
import pytest

from detret.detect.crops import Detection, ground_truth_crop, select_crop

MAP = {"footwear": ("footwear", "boots"), "eyewear": ("sunglasses",), "tops": ("top",)}
SIZE = (200, 300)  # width, height


def det(box, label, score, objectness=0.9):
    return Detection(box, label, score, objectness)


def test_highest_score_among_mapped_labels_with_objectness():
    dets = [det((0, 0, 50, 50), "boots", 0.7), det((10, 10, 60, 60), "footwear", 0.8, objectness=0.4),
            det((20, 20, 70, 70), "top", 0.99), det((30, 30, 80, 80), "footwear", 0.6)]
    crop = select_crop(dets, "footwear", MAP, SIZE)
    # footwear 0.8 fails objectness; top is not mapped to footwear; boots 0.7 wins
    assert (crop.rule, crop.detection, crop.box_xyxy) == ("detection", 0, (0, 0, 50, 50))


def test_objectness_must_exceed_threshold_strictly():
    dets = [det((0, 0, 50, 50), "top", 0.9, objectness=0.5)]
    assert select_crop(dets, "tops", MAP, SIZE).rule == "fallback"
    assert select_crop(dets, "tops", MAP, SIZE, objectness_thresh=0.49).rule == "detection"


def test_fallback_is_whole_photo():
    crop = select_crop([det((0, 0, 5, 5), "top", 0.9)], "eyewear", MAP, SIZE)
    assert (crop.rule, crop.detection, crop.box_xyxy) == ("fallback", None, (0.0, 0.0, 200.0, 300.0))
    assert select_crop([], "eyewear", MAP, SIZE).rule == "fallback"


def test_ties_broken_by_objectness_then_area_then_index():
    dets = [det((0, 0, 10, 10), "top", 0.8, 0.7), det((0, 0, 20, 20), "top", 0.8, 0.9)]
    assert select_crop(dets, "tops", MAP, SIZE).detection == 1
    dets = [det((0, 0, 10, 10), "top", 0.8, 0.9), det((0, 0, 20, 20), "top", 0.8, 0.9)]
    assert select_crop(dets, "tops", MAP, SIZE).detection == 1
    dets = [det((0, 0, 20, 20), "top", 0.8, 0.9), det((5, 5, 25, 25), "top", 0.8, 0.9)]
    assert select_crop(dets, "tops", MAP, SIZE).detection == 0


def test_boxes_outside_are_clipped_or_ignored():
    crop = select_crop([det((-20, 250, 100, 400), "top", 0.9)], "tops", MAP, SIZE)
    assert crop.box_xyxy == (0.0, 250.0, 100.0, 300.0) and crop.rule == "detection"
    outside = [det((300, 10, 400, 50), "top", 0.95), det((10, 10, 20, 20), "top", 0.5)]
    assert select_crop(outside, "tops", MAP, SIZE).detection == 1
    assert select_crop([det((300, 10, 400, 50), "top", 0.95)], "tops", MAP, SIZE).rule == "fallback"


def test_ablation_policies():
    dets = [det((0, 0, 50, 50), "top", 0.6), det((0, 0, 30, 30), "bag", 0.9), det((0, 0, 9, 9), "belt", 0.99, 0.1)]
    top1 = select_crop(dets, "eyewear", MAP, SIZE, policy="top1")
    assert (top1.rule, top1.detection) == ("detection", 1)
    full = select_crop(dets, "tops", MAP, SIZE, policy="full")
    assert (full.rule, full.box_xyxy) == ("full", (0.0, 0.0, 200.0, 300.0))
    with pytest.raises(ValueError, match="unknown crop policy"):
        select_crop(dets, "tops", MAP, SIZE, policy="best")
    with pytest.raises(KeyError, match="known: footwear"):
        select_crop(dets, "socks", MAP, SIZE)


def test_ground_truth_crop():
    assert ground_truth_crop((10, 20, 30, 40), SIZE).rule == "ground_truth"
    assert ground_truth_crop((150, 250, 260, 330), SIZE).box_xyxy == (150, 250, 200, 300)
    assert ground_truth_crop(None, SIZE).rule == "fallback"
    assert ground_truth_crop((500, 500, 600, 600), SIZE).rule == "fallback"
