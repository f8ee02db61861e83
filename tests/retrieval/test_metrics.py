"""Metrics against hand computations and an independent sort-based reference."""
import numpy as np
import pytest

from detret.retrieval.metrics import accuracy_at_k, average_precision, full_gallery_ap, positive_ranks, ranking


def test_average_precision_by_hand():
    # hits at ranks 1, 3: (1/1 + 2/3) / 2
    assert average_precision([1, 0, 1, 0], 2) == pytest.approx((1 + 2 / 3) / 2)
    # one positive never retrieved in a truncated list counts as zero
    assert average_precision([0, 1], 2) == pytest.approx((1 / 2) / 2)
    assert average_precision([0, 0, 0, 1], 1) == pytest.approx(0.25)
    with pytest.raises(ValueError):
        average_precision([1], 0)


def test_accuracy_at_k():
    assert accuracy_at_k([0, 0, 1], 2) == 0.0
    assert accuracy_at_k([0, 0, 1], 3) == 1.0
    assert accuracy_at_k([1], 20) == 1.0


def test_full_gallery_ap_equals_sort_based_reference():
    rng = np.random.default_rng(0)
    for _ in range(50):
        m = int(rng.integers(5, 60))
        scores = np.round(rng.normal(size=m), 1)  # rounding makes ties
        positives = rng.uniform(size=m) < 0.2
        positives[int(rng.integers(m))] = True
        order = np.lexsort((np.arange(m), -scores))  # independent reference: sort the whole gallery
        reference = average_precision(positives[order].astype(int), int(positives.sum()))
        assert full_gallery_ap(scores, positives) == pytest.approx(reference)
        assert np.array_equal(ranking(scores), order)
        assert np.array_equal(positive_ranks(scores, positives), np.flatnonzero(positives[order]) + 1)


def test_against_scikit_learn_without_ties():
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(1)
    for _ in range(20):
        scores = rng.normal(size=40)  # continuous: no ties, where sklearn's AP is eq. 4
        positives = rng.uniform(size=40) < 0.15
        positives[0] = True
        assert full_gallery_ap(scores, positives) == pytest.approx(average_precision_score(positives, scores))
