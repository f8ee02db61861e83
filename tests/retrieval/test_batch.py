"""One step's batch: the pairs and P x K draws, what an unreadable image drops, and each loss as
detret assembles it against the loss called directly on the same descriptors."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from detret.retrieval.batch import assemble, draw_pairs, pk_batches, pk_products
from detret.retrieval.losses import ap_loss, hardest_cosine_triplet_loss, hardest_negative_triplet_loss, triplet_loss
from detret.retrieval.metric_losses import PAPER_PK

from .toy_batches import TCFG, toy_set


def _descriptors(n: int, dim: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, dim, generator=g, dtype=torch.float64), dim=1)


def test_pk_batches_hold_p_products_of_k_photos_from_both_domains():
    tset = toy_set(n_products=7, street=2, shop=3)
    products = pk_products(tset)
    # 2 street + 3 shop photos each; product 1 also has product 0's photo that shows both
    assert {p: len(keys) for p, keys in products.items()} == {("tops", p): 6 if p == 1 else 5 for p in range(7)}
    draws = pk_batches(products, p=3, k=4, loss="npair", seed=1, epoch=0)
    # 7 products in groups of 3: 3 + 3, the last single product is dropped (no negative)
    assert [len(set(d.products)) for d in draws] == [3, 3]
    for d in draws:
        assert len(d.rows) == 12 and all(d.products.count(p) == 4 for p in set(d.products))
        for row, product in zip(d.rows, d.products):
            assert row[0] in products[product]
    domains = {row[0][0] for d in draws for row in d.rows}
    assert domains == {"street", "shop"}
    seen = [p for d in draws for p in set(d.products)]
    assert len(seen) == len(set(seen)) == 6  # each product once per epoch
    again = pk_batches(products, p=3, k=4, loss="npair", seed=1, epoch=0)
    assert [d.rows for d in again] == [d.rows for d in draws]
    assert [d.rows for d in pk_batches(products, 3, 4, "npair", seed=1, epoch=1)] != [d.rows for d in draws]
    # fewer photos than K: all of them, none twice
    few = pk_batches(products, p=7, k=9, loss="lifted", seed=1, epoch=0)[0]
    assert len(few.rows) == 36 and len(set(few.rows)) == 35  # product 0's shared photo: once for each


def test_a_product_with_a_single_photo_is_not_drawn():
    tset = toy_set(n_products=3, street=1, shop=1)
    tset.shop_by_product[("tops", 2)] = []
    assert set(pk_products(tset)) == {("tops", 0), ("tops", 1)}


@pytest.mark.parametrize("loss", list(PAPER_PK))
def test_metric_losses_are_pytorch_metric_learning_on_the_batch(loss):
    from pytorch_metric_learning import losses, miners

    tset = toy_set()
    p, k = 3, PAPER_PK[loss][1]
    draw = pk_batches(pk_products(tset), p, k, loss, seed=0, epoch=0)[0]
    keys, loss_fn = assemble(draw, set(draw.keys()), tset, TCFG, "cpu")
    d = _descriptors(len(keys))
    rows = torch.tensor([keys.index(r[0]) for r in draw.rows])
    labels = torch.tensor([p for _, p in draw.products])  # the product ids themselves
    direct = {"npair": lambda x, y: losses.NPairsLoss()(x, y),
              "lifted": lambda x, y: losses.LiftedStructureLoss(neg_margin=1.0, pos_margin=0.0)(x, y),
              "angular": lambda x, y: losses.AngularLoss(alpha=45)(x, y),
              "batch-hard": lambda x, y: losses.TripletMarginLoss(margin=0.0, smooth_loss=True)(
                  x, y, miners.BatchHardMiner()(x, y))}[loss]
    ours = loss_fn(d)
    assert ours.item() > 0
    assert torch.allclose(ours, direct(d[rows], labels))


def test_batch_hard_is_the_soft_margin_of_the_farthest_positive_and_nearest_negative():
    """An independent hand computation of Hermans et al.'s batch-hard soft-margin loss."""
    tset = toy_set()
    draw = pk_batches(pk_products(tset), 3, 4, "batch-hard", seed=0, epoch=0)[0]
    keys, loss_fn = assemble(draw, set(draw.keys()), tset, TCFG, "cpu")
    d = _descriptors(len(keys), seed=5)
    x = d[[keys.index(r[0]) for r in draw.rows]].numpy()
    y = np.array([p for _, p in draw.products])
    dist = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    per_anchor = []
    for i in range(len(y)):
        pos = [dist[i, j] for j in range(len(y)) if y[j] == y[i] and j != i]
        neg = [dist[i, j] for j in range(len(y)) if y[j] != y[i]]
        per_anchor.append(np.log1p(np.exp(max(pos) - min(neg))))
    assert loss_fn(d).item() == pytest.approx(np.mean(per_anchor), rel=1e-9)


def test_pairs_draw_assembles_the_papers_losses():
    tset = toy_set()
    mined = [np.array([j for j, s in enumerate(tset.shop) if not s.shows(q.product)])[:3] for q in tset.train_queries]
    queries = [0, 3, 5, 8]
    for loss in ("triplet", "ap", "hardest"):
        draw = draw_pairs(tset, queries, loss, TCFG, mined, epoch=2)
        keys, loss_fn = assemble(draw, set(draw.keys()), tset, TCFG, "cpu")
        d = _descriptors(len(keys), seed=1)
        at = {k: n for n, k in enumerate(keys)}
        if loss == "triplet":  # (query, positive, mined negative) rows
            q, p, n = (d[[at[r[c]] for r in draw.rows]] for c in range(3))
            assert torch.allclose(loss_fn(d), triplet_loss(q, p, n, TCFG.margin))
            assert all(tset.shop[r[1][1]].shows(tset.train_queries[r[0][1]].product) for r in draw.rows)
            assert all(not tset.shop[r[2][1]].shows(tset.train_queries[r[0][1]].product) for r in draw.rows)
        elif loss == "ap":  # each query against every shop item of the batch, positives by what they show
            q = d[[at[r[0]] for r in draw.rows]]
            items = d[[at[k] for k in draw.items]]
            labels = torch.tensor([[float(tset.shop[j].shows(p)) for _, j in draw.items] for p in draw.products],
                                  dtype=torch.float64)
            assert labels.sum(1).min() >= 1
            assert torch.allclose(loss_fn(d), ap_loss(q @ items.T, labels, nq=TCFG.ap_bins)[0])
        else:
            q, p = (d[[at[r[c]] for r in draw.rows]] for c in range(2))
            ids = torch.tensor([i // 2 for i in queries])  # toy queries: 2 per product
            assert torch.allclose(loss_fn(d), hardest_cosine_triplet_loss(q, p, ids, TCFG.margin))
    tcfg = TCFG.copy()
    tcfg.negatives = "batch"
    draw = draw_pairs(tset, queries, "triplet", tcfg, None, epoch=2)
    assert all(len(r) == 2 for r in draw.rows)
    keys, loss_fn = assemble(draw, set(draw.keys()), tset, tcfg, "cpu")
    d = _descriptors(len(keys), seed=2)
    q, p = (d[[keys.index(r[c]) for r in draw.rows]] for c in range(2))
    ids = torch.tensor([i // 2 for i in queries])
    assert torch.allclose(loss_fn(d), hardest_negative_triplet_loss(q, p, ids, tcfg.margin))


def test_an_unreadable_image_drops_its_rows_only():
    tset = toy_set()
    draw = pk_batches(pk_products(tset), 3, 4, "lifted", seed=0, epoch=0)[0]
    lost = draw.rows[0][0]
    keys, loss_fn = assemble(draw, set(draw.keys()) - {lost}, tset, TCFG, "cpu")
    assert lost not in keys and len(keys) == len(draw.keys()) - 1 and loss_fn is not None
    draw = draw_pairs(tset, [0, 2], "triplet", TCFG, [np.array([5, 6])] * len(tset.train_queries), epoch=0)
    keys, loss_fn = assemble(draw, {draw.rows[0][0]}, tset, TCFG, "cpu")
    assert keys == [] and loss_fn is None
