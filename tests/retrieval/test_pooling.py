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
