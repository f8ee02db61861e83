"""Multistage back-propagation gives the gradients of ordinary back-propagation."""
import torch

from detret.retrieval.losses import ap_loss, triplet_loss
from detret.retrieval.model import build_retrieval_net, set_batchnorm_eval
from detret.retrieval.multistage import multistage_backward


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_multistage_equals_plain_backprop():
    torch.manual_seed(0)
    model = build_retrieval_net("resnet18", dim=16, pretrained=False).double()
    model.train()
    set_batchnorm_eval(model)
    # images of different sizes, as with the longer-side resize
    images = [torch.randn(3, 40 + 8 * (i % 3), 48, dtype=torch.float64) for i in range(6)]

    def loss_fn(d):
        return ap_loss(d[:2] @ d[2:].T, torch.tensor([[1.0, 0, 0, 1], [0, 1, 0, 0]], dtype=d.dtype), nq=10)[0] \
            + triplet_loss(d[:2], d[2:4], d[4:6], 0.3)

    model.zero_grad()
    desc = torch.cat([model(x[None]) for x in images])
    plain_loss = loss_fn(desc)
    plain_loss.backward()
    plain = _grads(model)
    model.zero_grad()
    ms_loss = multistage_backward(model, images, loss_fn, chunk_size=1)
    staged = _grads(model)
    assert torch.allclose(ms_loss, plain_loss.detach())
    assert plain.keys() == staged.keys() and len(plain) > 10
    for name in plain:
        assert torch.allclose(plain[name], staged[name], atol=1e-10, rtol=1e-7), name
    # chunks of several same-size images are stacked: same gradients
    same = [torch.randn(3, 40, 48, dtype=torch.float64) for _ in range(6)]
    model.zero_grad()
    loss_fn(torch.cat([model(x[None]) for x in same])).backward()
    plain = _grads(model)
    model.zero_grad()
    multistage_backward(model, same, loss_fn, chunk_size=3)
    for name, g in _grads(model).items():
        assert torch.allclose(plain[name], g, atol=1e-10, rtol=1e-7), name
