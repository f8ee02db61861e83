import pytest
import torch

from detret.retrieval.pooling import GeM, gem


def test_gem_against_its_formula():
    x = torch.rand(2, 3, 4, 5) + 0.1
    p = 2.5
    expected = (x ** p).mean(dim=(2, 3)) ** (1 / p)
    assert torch.allclose(gem(x, p), expected, atol=1e-6)


def test_p1_is_average_and_large_p_approaches_max():
    x = torch.rand(2, 3, 6, 6) + 0.01
    assert torch.allclose(gem(x, 1.0), x.mean(dim=(2, 3)), atol=1e-6)
    big = gem(x.double(), 200.0)
    assert torch.allclose(big, x.double().amax(dim=(2, 3)), rtol=0.03)
    assert (gem(x, 8.0) <= x.amax(dim=(2, 3)) + 1e-6).all() and (gem(x, 8.0) >= gem(x, 3.0) - 1e-6).all()


def test_module_learns_p_and_clamps_negatives():
    m = GeM()
    assert m.p.item() == pytest.approx(3.0) and m.p.requires_grad and m.lr_mult == 10.0
    x = torch.randn(2, 4, 3, 3)
    y = m(x)
    assert torch.isfinite(y).all() and (y > 0).all()
    y.sum().backward()
    assert m.p.grad is not None and torch.isfinite(m.p.grad)


def test_mac_and_spoc_are_max_and_mean_over_positions():
    from detret.retrieval.pooling import MAC, SPoC, mac, spoc

    x = torch.randn(2, 3, 4, 5)
    by_hand_max = torch.tensor([[max(x[n, c].flatten().tolist()) for c in range(3)] for n in range(2)])
    by_hand_mean = torch.tensor([[sum(x[n, c].flatten().tolist()) / 20 for c in range(3)] for n in range(2)])
    assert torch.equal(mac(x), by_hand_max) and torch.equal(MAC()(x), by_hand_max)
    assert torch.allclose(spoc(x), by_hand_mean, atol=1e-6) and torch.allclose(SPoC()(x), by_hand_mean, atol=1e-6)


# R-MAC's regions worked out by hand from Tolias et al.'s rule (cirtorch's rmac), L = 3:
# (top, left, side) per level.
RMAC_6x6 = ([(0, 0, 6)]
            + [(t, l, 4) for t in (0, 2) for l in (0, 2)]
            + [(t, l, 3) for t in (0, 1, 3) for l in (0, 1, 3)])
# 4 x 7: the long side gets one extra region per level (40% overlap: 2 regions of 4 over 7 columns)
RMAC_4x7 = ([(0, 0, 4), (0, 3, 4)]
            + [(t, l, 2) for t in (0, 2) for l in (0, 2, 5)]
            + [(t, l, 2) for t in (0, 1, 2) for l in (0, 1, 3, 5)])


@pytest.mark.parametrize("shape, regions", [((6, 6), RMAC_6x6), ((4, 7), RMAC_4x7), ((7, 4), None)])
def test_rmac_regions_and_sum_against_a_hand_computation(shape, regions):
    from detret.retrieval.pooling import RMAC, rmac, rmac_regions

    h, w = shape
    if regions is None:  # a portrait map: the 4 x 7 regions transposed
        regions = [(left, top, side) for top, left, side in RMAC_4x7]
    assert sorted(rmac_regions(h, w, 3)) == sorted(regions)
    x = torch.rand(2, 5, h, w, dtype=torch.float64)
    expected = torch.zeros(2, 5, dtype=torch.float64)
    for top, left, side in [(0, 0, max(h, w))] + regions:  # the global MAC first (a region covering the map)
        patch = x[:, :, top:top + side, left:left + side]
        v = patch.amax(dim=(2, 3))
        expected += v / (v.norm(dim=1, keepdim=True) + 1e-6)
    assert torch.allclose(rmac(x), expected, atol=1e-9) and torch.allclose(RMAC()(x), expected, atol=1e-9)


def test_build_pooling_knows_the_four_and_refuses_others():
    from detret.retrieval.pooling import POOLINGS, build_pooling

    x = torch.rand(1, 2, 3, 3)
    for name in POOLINGS.names():
        assert build_pooling(name)(x).shape == (1, 2)
    with pytest.raises(ValueError, match="not one of gem, mac, spoc, rmac"):
        build_pooling("avg")
