"""One optimiser step's batch: which crops it reads, and the loss of their descriptors.

A batch is drawn in two ways (``retrieval.train.sampler``):

- ``pairs`` (Kucer & Murray, Gajic & Baldrich, Morelli et al.): seeded batches of street queries, each
  with one shop crop of its product; the triplet loss adds a mined negative per query, the AP loss
  the batch's shop crops and mined negatives per query;
- ``pk`` (Ibrahim et al.): P training products x K photos each, street and shop photos alike, for the
  losses of labelled photos (:class:`detret.retrieval.objective.Rows` ``PHOTOS``).

What a row of the batch holds is the loss's :class:`~detret.retrieval.objective.Rows`, read from its
registration (:data:`detret.retrieval.objective.LOSSES`), never from its name.

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

from ..errors import InputError
from ..registry import Registry
from .data import CropItem, Product, TrainingSet, batches
from .objective import LOSSES, LossBatch, Rows

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
    """The batch of the training queries `queries`, each with a positive (and negatives, by the loss's rows)."""
    kind = LOSSES.get(loss).rows(tcfg)
    rows, products, items = [], [], []
    for i in queries:
        rq = item_rng(tcfg.seed, epoch, QUERY_SAMPLING, i)
        q = tset.train_queries[i]
        pos = ("shop", int(rq.choice(tset.shop_by_product[q.product])))
        if kind == Rows.TRIPLETS:
            pool = mined[i] if len(mined[i]) else np.array(
                [j for j, s in enumerate(tset.shop) if not s.shows(q.product)])
            rows.append((("street", int(i)), pos, ("shop", int(rq.choice(pool)))))
        elif kind == Rows.RANKING:
            rows.append((("street", int(i)),))
            pool = mined[i]
            items.append(pos)
            items.extend(("shop", int(j)) for j in rq.choice(pool, size=min(tcfg.ap_negatives, len(pool)),
                                                               replace=False))
        elif kind == Rows.PHOTOS:  # the pair as two labelled photos
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


@dataclass(frozen=True)
class SamplerEntry:
    """A way to draw an epoch's batches: ``draws(tset, loss, tcfg, mined, epoch, rng) -> [Draw]`` (``mined``:
    each training query's mined negatives when the loss's rows need them, else None); ``rows``: the
    loss rows it can draw; ``check(tcfg)`` raises InputError for settings it cannot draw with."""
    name: str
    draws: Callable[..., List[Draw]]
    rows: Tuple[Rows, ...]
    summary: str
    check: Callable[[object], None] = lambda tcfg: None


def _pair_draws(tset: TrainingSet, loss: str, tcfg, mined, epoch: int, rng: np.random.Generator) -> List[Draw]:
    return [draw_pairs(tset, batch, loss, tcfg, mined, epoch)
            for batch in batches(len(tset.train_queries), tcfg.batch_size, rng)]


def _check_pk(tcfg) -> None:
    if tcfg.pk_products < 2 or tcfg.pk_photos < 2:
        raise InputError(f"retrieval.train.pk_products and pk_photos must be at least 2 (a batch needs negatives "
                         f"and positives), got {tcfg.pk_products} x {tcfg.pk_photos}")


def _pk_draws(tset: TrainingSet, loss: str, tcfg, mined, epoch: int, rng: np.random.Generator) -> List[Draw]:
    return pk_batches(pk_products(tset), tcfg.pk_products, tcfg.pk_photos, loss, tcfg.seed, epoch)


SAMPLERS: Registry[SamplerEntry] = Registry("sampler")
SAMPLERS.register(SamplerEntry("pairs", _pair_draws, tuple(Rows),
                               "street queries in seeded batches, each with a shop photo of its product"))
SAMPLERS.register(SamplerEntry("pk", _pk_draws, (Rows.PHOTOS,),
                               "P products x K photos of both domains (Ibrahim et al.)", _check_pk))


def _label_ids(products: Sequence[Product], device) -> torch.Tensor:
    ids = {p: n for n, p in enumerate(sorted(set(products)))}
    return torch.tensor([ids[p] for p in products], dtype=torch.long, device=device)


def assemble(draw: Draw, readable: Set[Key], tset: TrainingSet, tcfg, device) -> Tuple[List[Key], Optional[LossFn]]:
    """(the images of the batch's usable rows, the loss of their descriptors) - rows with an unreadable
    image are dropped; the loss is None when nothing is left to learn from."""
    entry = LOSSES.get(draw.loss)
    keep = [n for n, row in enumerate(draw.rows) if all(k in readable for k in row)]
    rows = [draw.rows[n] for n in keep]
    products = [draw.products[n] for n in keep]
    items = [k for k in draw.items if k in readable]
    keys = sorted({k for row in rows for k in row} | set(items))
    if not rows or (entry.rows(tcfg) == Rows.RANKING and not items):
        return keys, None
    at = {k: n for n, k in enumerate(keys)}
    relevance = None
    if items:
        relevance = torch.tensor([[float(tset.shop[j].shows(p)) for _, j in items] for p in products],
                                 device=device).reshape(len(rows), len(items))
    batch = LossBatch(columns=torch.tensor([[at[k] for k in row] for row in rows], dtype=torch.long, device=device),
                      labels=_label_ids(products, device),
                      street=torch.tensor([domain == "street" for domain, _ in keys], device=device),
                      items=torch.tensor([at[k] for k in items], dtype=torch.long, device=device) if items else None,
                      relevance=relevance)
    loss = entry.build(tcfg)
    return keys, lambda d: loss(d, batch)
