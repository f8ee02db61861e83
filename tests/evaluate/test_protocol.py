"""The protocol on ideal descriptors: the real Street2Shop test pairs give official counts and perfect scores."""

import numpy as np
import pytest

from detret.data.street2shop import load_street2shop
from detret.embed.artifact import Row
from detret.evaluate.protocol import evaluate_descriptors

OFFICIAL = {"bags": 174, "belts": 89, "dresses": 3292, "eyewear": 138, "footwear": 2178, "hats": 86,
            "leggings": 517, "outerwear": 666, "pants": 130, "skirts": 604, "tops": 763}


def _one_hot(keys, vocab):
    x = np.zeros((len(keys), len(vocab)), np.float32)
    for i, k in enumerate(keys):
        x[i, vocab[k]] = 1.0
    return x


def test_ideal_descriptors_on_real_test_pairs(realdata):
    data = load_street2shop(realdata / "street2shop", splits=("test",))
    grows = [Row(s.photo_id, s.product_id, c, "shop", None, "full", None) for c in data.categories
             for s in data.gallery[c]]
    qrows = [Row(q.photo_id, q.product_id, q.category, "street", q.record, "ground_truth", q.box_xyxy)
             for q in data.test_queries]
    vocab = {k: i for i, k in enumerate(sorted({(r.category, r.product_id) for r in grows + qrows}))}
    g = _one_hot([(r.category, r.product_id) for r in grows], vocab)
    q = _one_hot([(r.category, r.product_id) for r in qrows], vocab)
    result = evaluate_descriptors(g, grows, q, qrows, ks=(1, 20))
    assert {c: r["queries"] for c, r in result["per_category"].items()} == OFFICIAL
    for cat, r in result["per_category"].items():
        assert r["mAP"] == 1.0 and r["Acc@1"] == 1.0 and r["Acc@20"] == 1.0, cat
        assert r["gallery"] == len(data.gallery[cat]) and r["queries_without_positive"] == 0
    assert result["mean_over_categories"] == {"mAP": 1.0, "Acc@1": 1.0, "Acc@20": 1.0}


def test_by_hand_and_queries_without_positive():
    # category a: gallery products 1, 2, 1; query of product 1 scores [0.9, 0.5, 0.1]: positives at ranks 1, 3
    grows = [Row(10, 1, "a", "shop", None, "full", None), Row(11, 2, "a", "shop", None, "full", None),
             Row(12, 1, "a", "shop", None, "full", None), Row(13, 5, "b", "shop", None, "full", None)]
    g = np.array([[0.9, 0.436], [0.5, 0.866], [0.1, 0.995], [1, 0]], np.float32)
    qrows = [Row(1, 1, "a", "street", 0, "ground_truth", None), Row(2, 7, "a", "street", 1, "ground_truth", None),
             Row(3, 5, "b", "street", 0, "ground_truth", None)]
    q = np.array([[1, 0], [1, 0], [0, 1]], np.float32)
    r = evaluate_descriptors(g, grows, q, qrows, ks=(1, 2))
    a = r["per_category"]["a"]
    assert a["mAP"] == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert a["queries"] == 2 and a["queries_without_positive"] == 1 and a["Acc@1"] == 1.0
    b = r["per_category"]["b"]
    assert b["mAP"] == 1.0 and b["Acc@1"] == 1.0  # the only gallery photo is the positive
    assert r["mean_over_categories"]["mAP"] == pytest.approx(((1 + 2 / 3) / 2 + 1) / 2)
    assert r["mean_over_queries"]["mAP"] == pytest.approx(((1 + 2 / 3) / 2 + 1) / 2)
    assert len(r["acc_curve"]) == 50


def test_a_photo_showing_two_products_is_a_positive_for_each():
    """Gallery photo 10 is listed for products 1 and 2 (Row.product_ids): both queries find it at rank 1."""
    grows = [Row(10, 1, "a", "shop", None, "full", None, (1, 2)), Row(11, 2, "a", "shop", None, "full", None),
             Row(12, 3, "a", "shop", None, "full", None)]
    g = np.array([[1, 0], [0.6, 0.8], [0, 1]], np.float32)
    qrows = [Row(1, 1, "a", "street", 0, "ground_truth", None), Row(2, 2, "a", "street", 1, "ground_truth", None)]
    q = np.array([[1, 0], [1, 0]], np.float32)
    r = evaluate_descriptors(g, grows, q, qrows, ks=(1,))["per_category"]["a"]
    # product 1: positive at rank 1 (AP 1); product 2: positives 10 and 11 at ranks 1 and 2 (AP 1)
    assert r["queries_without_positive"] == 0 and r["mAP"] == 1.0 and r["Acc@1"] == 1.0
    # the same gallery with photo 10 listed for product 1 only: product 2's first positive is at rank 2
    grows[0] = Row(10, 1, "a", "shop", None, "full", None)
    r = evaluate_descriptors(g, grows, q, qrows, ks=(1,))["per_category"]["a"]
    assert r["mAP"] == pytest.approx((1 + 1 / 2) / 2) and r["Acc@1"] == 0.5
