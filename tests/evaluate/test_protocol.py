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


def _brute_force_all(g, grows, q, qrows, k):
    """Recall@k over one gallery of every shop photo, one query at a time, by a full sort."""
    hits = []
    for qi, qr in enumerate(qrows):
        positives = {j for j, r in enumerate(grows) if r.category == qr.category and qr.product_id in r.products}
        if not positives:
            continue
        scores = g @ q[qi]
        order = sorted(range(len(grows)), key=lambda j: (-scores[j], j))
        hits.append(bool(positives & set(order[:k])))
    return float(np.mean(hits))


def test_protocol_all_ranks_against_every_shop_photo_as_a_brute_force_search():
    """Category b's photo of product 1 outscores category a's product 1 for the first query: within category it is
    not in the gallery; over all, it is ranked but is not a positive (another category's product 1)."""
    grows = [Row(10, 1, "a", "shop", None, "full", None), Row(11, 2, "a", "shop", None, "full", None),
             Row(20, 1, "b", "shop", None, "full", None)]
    g = np.array([[0.8, 0.6], [0.6, 0.8], [1, 0]], np.float32)
    qrows = [Row(1, 1, "a", "street", 0, "ground_truth", None), Row(2, 1, "b", "street", 0, "ground_truth", None)]
    q = np.array([[1, 0], [0, 1]], np.float32)
    within = evaluate_descriptors(g, grows, q, qrows, ks=(1, 2))
    over_all = evaluate_descriptors(g, grows, q, qrows, ks=(1, 2), protocol="all")
    assert within["per_category"]["a"]["Acc@1"] == 1.0 and within["per_category"]["a"]["gallery"] == 2
    assert over_all["per_category"]["a"]["Acc@1"] == 0.0 and over_all["per_category"]["a"]["Acc@2"] == 1.0
    assert over_all["per_category"]["a"]["gallery"] == 3
    # b's query: scores [0.6, 0.8, 0]: its positive (photo 20) last, rank 3
    assert over_all["per_category"]["b"]["mAP"] == pytest.approx(1 / 3)
    rng = np.random.default_rng(0)
    cats = ["a", "b", "c"]
    grows = [Row(100 + i, int(rng.integers(0, 6)), cats[i % 3], "shop", None, "full", None) for i in range(60)]
    qrows = [Row(i, int(rng.integers(0, 6)), cats[i % 3], "street", 0, "ground_truth", None) for i in range(30)]
    g, q = rng.normal(size=(60, 8)).astype(np.float32), rng.normal(size=(30, 8)).astype(np.float32)
    result = evaluate_descriptors(g, grows, q, qrows, ks=(1, 5, 10, 20), protocol="all")
    for k in (1, 5, 10, 20):
        assert result["mean_over_queries"][f"Acc@{k}"] == pytest.approx(_brute_force_all(g, grows, q, qrows, k))
