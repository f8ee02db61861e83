"""Triplet loss against eq. 2 by hand; AP loss against exact AP and a direct binned evaluation."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from detret.retrieval.losses import ap_loss, hardest_negative_triplet_loss, triplet_loss
from detret.retrieval.metrics import full_gallery_ap


def test_triplet_by_hand():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    pos = torch.tensor([[0.8, 0.6], [0.0, 1.0]])
    neg = torch.tensor([[0.6, 0.8], [1.0, 0.0]])
    # row 0: |q-p|^2 = 0.04 + 0.36 = 0.40, |q-n|^2 = 0.16 + 0.64 = 0.80 -> 0.5 * max(0, 0.5 + 0.4 - 0.8) = 0.05
    # row 1: |q-p|^2 = 0, |q-n|^2 = 2 -> 0
    assert triplet_loss(q, pos, neg, 0.5).item() == pytest.approx((0.05 + 0.0) / 2)
    assert triplet_loss(q, pos, neg, 0.5).item() == pytest.approx(0.025)


def test_hardest_in_batch_negative():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    d = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.8, 0.6]])
    labels = torch.tensor([0, 1, 1])  # rows 1 and 2 show the same product
    # q0: positive d0 (dist 0), negatives d1 (2.0), d2 (0.4) -> hardest 0.4: 0.5*max(0, 1 + 0 - 0.4) = 0.3
    # q1: negative only d0 (2.0): 0.5*max(0, 1 + 0 - 2) = 0
    # q2: positive d2 (|(0.6,0.8)-(0.8,0.6)|^2 = 0.08), negative d0 (0.16+0.64 = 0.8): 0.5*(1 + 0.08 - 0.8) = 0.14
    assert hardest_negative_triplet_loss(q, d, labels, 1.0).item() == pytest.approx((0.3 + 0.0 + 0.14) / 3)


def _binned_ap_direct(scores, labels, nq, lo, hi):
    """The binned AP written out loop by loop (a second, independent evaluation)."""
    delta = (hi - lo) / (nq - 1)
    aps = []
    for s, y in zip(scores, labels):
        if y.sum() == 0:
            continue
        n = np.zeros(nq)
        npos = np.zeros(nq)
        for sj, yj in zip(s, y):
            for k in range(nq):
                w = max(0.0, 1 - abs(min(max(sj, lo), hi) - (hi - k * delta)) / delta)
                n[k] += w
                npos[k] += w * yj
        ap = 0.0
        for k in range(nq):
            prec = npos[: k + 1].sum() / n[: k + 1].sum() if n[: k + 1].sum() > 0 else 0.0
            ap += prec * npos[k] / y.sum()
        aps.append(ap)
    return 1 - np.mean(aps)


def test_ap_loss_matches_direct_binned_formula_on_random_inputs():
    rng = np.random.default_rng(0)
    scores = rng.uniform(-1, 1, (5, 12))
    labels = (rng.uniform(size=(5, 12)) < 0.3).astype(float)
    labels[0] = 0  # a query with no positive is excluded
    labels[1, 0] = 1
    loss, excluded = ap_loss(torch.tensor(scores), torch.tensor(labels), nq=10)
    assert excluded == 1
    assert loss.item() == pytest.approx(_binned_ap_direct(scores, labels, 10, -1.0, 1.0), abs=1e-9)


def test_bins_form_a_partition_of_unity():
    from detret.retrieval.losses import bin_weights

    s = torch.linspace(-1, 1, 101)
    w = bin_weights(s, 25, -1.0, 1.0)
    assert torch.allclose(w.sum(-1), torch.ones(101), atol=1e-6)


def test_ap_loss_equals_exact_ap_when_bins_are_fine_and_scores_separated():
    rng = np.random.default_rng(1)
    nq = 201  # bin width 0.01
    for _ in range(5):
        # distinct scores at least 3 bin widths apart, snapped onto bin centres
        levels = rng.choice(np.arange(0, nq, 3), size=15, replace=False)
        scores = 1.0 - levels * (2.0 / (nq - 1))
        labels = np.zeros(15)
        labels[rng.choice(15, size=4, replace=False)] = 1
        loss, _ = ap_loss(torch.tensor(scores[None]), torch.tensor(labels[None]), nq=nq)
        exact = full_gallery_ap(scores, labels.astype(bool))
        assert 1 - loss.item() == pytest.approx(exact, abs=1e-9)
    # and close (stated tolerance 0.02) for unsnapped but separated scores with 101 bins
    scores = np.sort(rng.uniform(-1, 1, 20))[::-1]
    scores = scores + np.arange(20) * 0.0  # keep order
    labels = np.zeros(20)
    labels[[0, 3, 7, 15]] = 1
    loss, _ = ap_loss(torch.tensor(scores[None]), torch.tensor(labels[None]), nq=101)
    assert abs((1 - loss.item()) - full_gallery_ap(scores, labels.astype(bool))) < 0.02


def test_no_nan_for_all_negative_rows_and_gradients_flow():
    d = F.normalize(torch.randn(6, 8, dtype=torch.float64), dim=1).requires_grad_(True)
    scores = d[:3] @ d[3:].T
    labels = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 0, 1]], dtype=torch.float64)
    loss, excluded = ap_loss(scores, labels, nq=25)
    assert torch.isfinite(loss) and excluded == 1
    loss.backward()
    assert torch.isfinite(d.grad).all() and d.grad.abs().sum() > 0
    zero, _ = ap_loss(scores.detach().requires_grad_(True), torch.zeros(3, 3, dtype=torch.float64))
    assert zero.item() == 0.0
    with pytest.raises(ValueError, match="nq"):
        ap_loss(scores, labels, nq=1)


def test_hardest_cosine_triplet_is_morelli_eq3_by_hand():
    """max over the batch's other products' shop photos of [alpha - s(a, b) + s(a, b')]_+, summed over pairs."""
    import math

    from detret.retrieval.losses import hardest_cosine_triplet_loss

    def unit(*v):
        n = math.sqrt(sum(x * x for x in v))
        return [x / n for x in v]

    q = torch.tensor([unit(1, 0), unit(0, 1), unit(1, 1)])
    d = torch.tensor([unit(1, 0.2), unit(0.3, 1), unit(1, 0.9)])
    labels = torch.tensor([0, 1, 0])          # pairs 0 and 2 show the same product: not negatives of each other
    s = [[sum(a * b for a, b in zip(qi, dj)) for dj in d.tolist()] for qi in q.tolist()]
    expected = max(0.0, 0.1 - s[0][0] + s[0][1])                      # query 0: only d1 is a negative
    expected += max(0.0, 0.1 - s[1][1] + max(s[1][0], s[1][2]))       # query 1: d0 and d2
    expected += max(0.0, 0.1 - s[2][2] + s[2][1])                     # query 2: only d1
    got = hardest_cosine_triplet_loss(q, d, labels, 0.1)
    assert got.item() == pytest.approx(expected, abs=1e-6)
    alone = hardest_cosine_triplet_loss(q[:1], d[:1], labels[:1], 0.1)  # no negative in the batch
    assert alone.item() == 0.0
