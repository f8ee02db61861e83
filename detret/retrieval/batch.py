"""One optimiser step's batch: which crops it reads, and the loss of their descriptors.

A batch is drawn in two ways (``retrieval.train.sampler``):

- ``pairs`` (Kucer & Murray, Gajic & Baldrich, Morelli et al.): seeded batches of street queries, each
  with one shop crop of its product; the triplet loss adds a mined negative per query, the AP loss
  the batch's shop crops and mined negatives per query;
- ``pk`` (Ibrahim et al.): P training products x K photos each, street and shop photos alike, for the
  label-based losses of :mod:`detret.retrieval.metric_losses`.

Every draw is a function of (seed, epoch, item) alone, so each process of a data-parallel group draws
the same batch. Then :func:`assemble` drops what cannot be read (the same set in every process: the
readable keys are gathered first) and returns the batch's distinct images and the loss as a function of
their descriptors [len(keys), D]. The loss therefore always sees the whole batch, however many
processes read and embed it (see :func:`detret.retrieval.multistage.multistage_backward`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np
import torch

from .data import CropItem, Product, TrainingSet
from .losses import ap_loss, hardest_cosine_triplet_loss, hardest_negative_triplet_loss, triplet_loss
from .metric_losses import PML_LOSSES, build_metric_loss

Key = Tuple[str, int]  # ("street", index into TrainingSet.train_queries) or ("shop", index into TrainingSet.shop)
LossFn = Callable[[torch.Tensor], torch.Tensor]

# Streams of the per-item generators (item_rng's `kind`).
QUERY_SAMPLING, STREET_AUGMENT, SHOP_AUGMENT, PK_SAMPLING = 0, 1, 2, 3


def item_rng(seed: int, epoch: int, kind: int, index: int) -> np.random.Generator:
    """The generator of one query's sampling or one image's augmentation: a function of
    (seed, epoch, item) alone, so batches do not depend on how they are split across processes."""
    return np.random.default_rng([seed, epoch, kind, int(index)])


def crop_item(tset: TrainingSet, key: Key) -> CropItem:
    domain, index = key
    return tset.train_queries[index] if domain == "street" else tset.shop[index]


def augment_rng(seed: int, epoch: int, key: Key) -> np.random.Generator:
    return item_rng(seed, epoch, STREET_AUGMENT if key[0] == "street" else SHOP_AUGMENT, key[1])


@dataclass
class Draw:
    """What one batch asks for, before any photo is read.

    ``rows``: the loss's units, each a tuple of image keys (triplet with offline negatives:
    (query, positive, negative); batch negatives: (query, positive); AP: (query,); the metric-learning
    losses: (photo,)), ``products`` the product of each row, ``items`` the shop crops AP ranks.
    """

    loss: str
    rows: List[Tuple[Key, ...]]
    products: List[Product]
    items: List[Key] = field(default_factory=list)

    def keys(self) -> List[Key]:
        """The batch's distinct images, in a fixed order."""
        return sorted({k for row in self.rows for k in row} | set(self.items))


def draw_pairs(tset: TrainingSet, queries: Sequence[int], loss: str, tcfg, mined: Optional[List[np.ndarray]],
               epoch: int) -> Draw:
    """The batch of the training queries `queries`, each with a positive (and negatives, by the loss)."""
    rows, products, items = [], [], []
    for i in queries:
        rq = item_rng(tcfg.seed, epoch, QUERY_SAMPLING, i)
        q = tset.train_queries[i]
        pos = ("shop", int(rq.choice(tset.shop_by_product[q.product])))
        if loss == "triplet" and tcfg.negatives == "offline":
            pool = mined[i] if len(mined[i]) else np.array(
                [j for j, s in enumerate(tset.shop) if not s.shows(q.product)])
            rows.append((("street", int(i)), pos, ("shop", int(rq.choice(pool)))))
        elif loss == "ap":
            rows.append((("street", int(i)),))
            pool = mined[i]
            items.append(pos)
            items.extend(("shop", int(j)) for j in rq.choice(pool, size=min(tcfg.ap_negatives, len(pool)),
                                                               replace=False))
        elif loss in PML_LOSSES:  # the pair as two labelled photos
            rows.extend([(("street", int(i)),), (pos,)])
            products.append(q.product)
        else:
            rows.append((("street", int(i)), pos))
        products.append(q.product)
    return Draw(loss, rows, products, sorted(set(items)))


def pk_products(tset: TrainingSet) -> Dict[Product, List[Key]]:
    """Every training product with at least two photos (street or shop) -> its photos' keys."""
    photos: Dict[Product, List[Key]] = {}
    for i, q in enumerate(tset.train_queries):
        photos.setdefault(q.product, []).append(("street", i))
    for product in photos:
        photos[product] += [("shop", j) for j in tset.shop_by_product.get(product, [])]
    return {p: keys for p, keys in sorted(photos.items()) if len(keys) >= 2}


def pk_batches(products: Dict[Product, List[Key]], p: int, k: int, loss: str, seed: int, epoch: int) -> List[Draw]:
    """One epoch of P x K batches: the products shuffled and cut into groups of `p` (a last group of
    fewer than two products is dropped: it has no negative), `k` photos of each drawn without
    replacement (all of them when a product has fewer, where the reference repeats photos)."""
    names = list(products)
    order = np.random.default_rng([seed, epoch, PK_SAMPLING]).permutation(len(names))
    draws = []
    for start in range(0, len(order), p):
        group = order[start:start + p]
        if len(group) < 2:
            continue
        rows, labels = [], []
        for n in group:
            keys = products[names[n]]
            chosen = item_rng(seed, epoch, PK_SAMPLING, int(n)).choice(len(keys), size=min(k, len(keys)),
                                                                       replace=False)
            rows += [(keys[int(c)],) for c in sorted(chosen)]
            labels += [names[n]] * len(chosen)
        draws.append(Draw(loss, rows, labels))
    return draws


def _label_ids(products: Sequence[Product], device) -> torch.Tensor:
    ids = {p: n for n, p in enumerate(sorted(set(products)))}
    return torch.tensor([ids[p] for p in products], dtype=torch.long, device=device)


def assemble(draw: Draw, readable: Set[Key], tset: TrainingSet, tcfg, device) -> Tuple[List[Key], Optional[LossFn]]:
    """(the images of the batch's usable rows, the loss of their descriptors) - rows with an unreadable
    image are dropped; the loss is None when nothing is left to learn from."""
    keep = [n for n, row in enumerate(draw.rows) if all(k in readable for k in row)]
    rows = [draw.rows[n] for n in keep]
    products = [draw.products[n] for n in keep]
    items = [k for k in draw.items if k in readable]
    keys = sorted({k for row in rows for k in row} | set(items))
    at = {k: n for n, k in enumerate(keys)}

    def column(c: int) -> torch.Tensor:
        return torch.tensor([at[row[c]] for row in rows], dtype=torch.long, device=device)

    if draw.loss == "ap":
        if not rows or not items:
            return keys, None
        q, it = column(0), torch.tensor([at[k] for k in items], dtype=torch.long, device=device)
        labels = torch.tensor([[float(tset.shop[j].shows(p)) for _, j in items] for p in products],
                              device=device).reshape(len(rows), len(items))
        return keys, lambda d: ap_loss(d[q] @ d[it].T, labels, nq=tcfg.ap_bins)[0]
    if not rows:
        return keys, None
    if draw.loss in PML_LOSSES:
        photo, labels, metric = column(0), _label_ids(products, device), build_metric_loss(draw.loss)
        return keys, lambda d: metric(d[photo], labels)
    if len(rows[0]) == 3:
        q, p, n = column(0), column(1), column(2)
        return keys, lambda d: triplet_loss(d[q], d[p], d[n], tcfg.margin)
    q, p, labels = column(0), column(1), _label_ids(products, device)
    if draw.loss == "hardest":
        return keys, lambda d: hardest_cosine_triplet_loss(d[q], d[p], labels, tcfg.margin)
    return keys, lambda d: hardest_negative_triplet_loss(d[q], d[p], labels, tcfg.margin)
