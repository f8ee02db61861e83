"""Multistage back-propagation gives the gradients of ordinary back-propagation."""
import pytest
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


# -- every loss as training assembles it: multistage, and exact over two processes ----------------------------

LOSSES = ("triplet", "triplet-batch", "ap", "hardest", "npair", "lifted", "angular", "batch-hard")


def _toy_batch(loss: str):
    """(image keys, loss of their descriptors) of one toy batch of `loss`, as train-retrieval builds it."""
    import numpy as np

    from detret.retrieval.batch import assemble, draw_pairs, pk_batches, pk_products

    from .toy_batches import TCFG, toy_set

    tset = toy_set()
    tcfg = TCFG.copy()
    if loss in ("npair", "lifted", "angular", "batch-hard"):
        draw = pk_batches(pk_products(tset), 3, 4, loss, seed=0, epoch=0)[0]
    else:
        tcfg.negatives = "batch" if loss == "triplet-batch" else "offline"
        mined = [np.array([j for j, s in enumerate(tset.shop) if not s.shows(q.product)])[:4]
                 for q in tset.train_queries]
        draw = draw_pairs(tset, [0, 3, 4, 7, 9], loss.replace("-batch", ""), tcfg, mined, epoch=0)
    return assemble(draw, set(draw.keys()), tset, tcfg, "cpu")


def _plain_grads(loss: str):
    from .toy_batches import TinyNet, grads, image_of

    keys, loss_fn = _toy_batch(loss)
    model = TinyNet().double()
    value = loss_fn(torch.cat([model(image_of(k)[None]) for k in keys]))
    value.backward()
    return value.item(), grads(model)


@pytest.mark.parametrize("loss", LOSSES)
def test_every_loss_under_multistage_equals_plain_backprop(loss):
    from .toy_batches import TinyNet, grads, image_of

    value, plain = _plain_grads(loss)
    assert value > 0
    keys, loss_fn = _toy_batch(loss)
    model = TinyNet().double()
    staged_value = multistage_backward(model, [image_of(k) for k in keys], loss_fn, chunk_size=4)
    staged = grads(model)
    assert staged_value.item() == pytest.approx(value, rel=1e-12)
    for name, g in plain.items():
        assert torch.allclose(g, staged[name], atol=1e-12, rtol=1e-9), name


def _two_process_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    from detret.retrieval.multistage import Share

    from .toy_batches import TinyNet, TinyTwoStream, grads, image_of

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        for loss in LOSSES:
            keys, loss_fn = _toy_batch(loss)
            model = TinyNet().double()
            rows = list(range(len(keys)))[rank::world]
            value = multistage_backward(model, [image_of(keys[n]) for n in rows], loss_fn, 2,
                                        Share(rows, len(keys), world, model.dim))
            if rank == 0:
                torch.save({"value": float(value), "grads": grads(model)}, f"{out_dir}/{loss}.pt")
        # two streams: each process embeds its rows by their domain's stream (here rank 1 has no street image)
        keys, loss_fn = _toy_batch("lifted")
        model = TinyTwoStream().double()
        rows = [n for n, k in enumerate(keys) if (k[0] == "street") == (rank == 0)]
        multistage_backward(model, [image_of(keys[n]) for n in rows], loss_fn, 3,
                            Share(rows, len(keys), world, model.dim), [keys[n][0] for n in rows])
        if rank == 1:
            torch.save(grads(model), f"{out_dir}/two-stream.pt")
    finally:
        dist.destroy_process_group()


def test_two_processes_give_the_gradients_of_one_for_every_loss(tmp_path):
    """The issue's exactness test: each process embeds half the batch, the loss sees all of it."""
    import torch.multiprocessing as mp

    mp.spawn(_two_process_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    for loss in LOSSES:
        value, plain = _plain_grads(loss)
        two = torch.load(tmp_path / f"{loss}.pt", weights_only=True)
        assert two["value"] == pytest.approx(value, rel=1e-12), loss
        for name, g in plain.items():
            assert torch.allclose(g, two["grads"][name], atol=1e-12, rtol=1e-9), (loss, name)
    # a two-stream network, one process holding all the street images and the other all the shop ones
    from .toy_batches import TinyTwoStream, image_of

    keys, loss_fn = _toy_batch("lifted")
    model = TinyTwoStream().double()
    loss_fn(torch.cat([model(image_of(k)[None], k[0]) for k in keys])).backward()
    two = torch.load(tmp_path / "two-stream.pt", weights_only=True)
    assert {n.split(".")[0] for n in two} == {"shop", "street"}
    for name, p in model.named_parameters():
        assert torch.allclose(p.grad, two[name], atol=1e-12, rtol=1e-9), name


def test_a_process_without_images_still_joins_the_step(tmp_path):
    """One image, two processes: the second has nothing to embed but takes part in the step and ends
    with the same gradients."""
    import torch.multiprocessing as mp

    mp.spawn(_lonely_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    from .toy_batches import TinyNet, grads, image_of

    model = TinyNet().double()
    model(image_of(("street", 0))[None]).pow(2).sum().backward()
    two = torch.load(tmp_path / "lonely.pt", weights_only=True)
    for name, g in grads(model).items():
        assert torch.allclose(g, two[name], atol=1e-12), name
    unused = torch.load(tmp_path / "unused.pt", weights_only=True)
    assert unused == {n: n.startswith("street.") for n in unused} and len(unused) == 8


def _lonely_worker(rank: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    from detret.retrieval.multistage import Share

    from .toy_batches import TinyNet, TinyTwoStream, grads, image_of

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        model = TinyNet().double()
        images = [image_of(("street", 0))] if rank == 0 else []
        multistage_backward(model, images, lambda d: d.pow(2).sum(), 1, Share([0] if rank == 0 else [], 1, 2, 8))
        if rank == 1:
            torch.save(grads(model), f"{out_dir}/lonely.pt")
        # a stream no process used keeps no gradient, as in one process (the optimiser skips it)
        two = TinyTwoStream().double()
        multistage_backward(two, images, lambda d: d.pow(2).sum(), 1, Share([0] if rank == 0 else [], 1, 2, 8),
                            ["shop"] * len(images))
        if rank == 1:
            torch.save({n: p.grad is None for n, p in two.named_parameters()}, f"{out_dir}/unused.pt")
    finally:
        dist.destroy_process_group()
