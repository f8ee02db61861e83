"""Multistage back-propagation (Revaud et al., ICCV 2019, Section 3.3; used by Kucer & Murray).

A listwise loss needs the descriptors of the whole batch at once, but holding
the activations of every image for back-propagation bounds batch and image
size by memory. Instead:

1. embed every image without gradients -> descriptors D [B, D];
2. compute the loss on D (a leaf requiring grad) and its gradient dL/dD;
3. for each image (or chunk of images) recompute its descriptor with gradients
   and back-propagate dL/dD of its rows: by the chain rule the parameter
   gradients accumulate to exactly those of ordinary back-propagation.

Memory is that of one chunk; the cost is one extra forward pass. Requires a
deterministic forward (BatchNorm statistics frozen, no dropout), which
:func:`detret.retrieval.model.set_batchnorm_eval` ensures.

Data parallel, exactly. Splitting a batch across N processes that each compute the loss on their
share is not the loss of the batch for a listwise loss (AP, N-pair, lifted: the ranking set shrinks
with N) nor for in-batch negatives. Multistage back-propagation makes the exact version cheap: each
process embeds its share without gradients, the descriptors are all-gathered, every process computes
the loss and dL/dD on the whole batch, and back-propagates the rows of its own share. The parameter
gradients summed over processes are those of one process on the whole batch; DistributedDataParallel
averages them, so each process scales its rows by N.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

import torch
from torch import nn


def _forward_chunk(model: nn.Module, images: Sequence[torch.Tensor]) -> torch.Tensor:
    shapes = {tuple(x.shape) for x in images}
    if len(shapes) == 1:
        return model(torch.stack(list(images)))
    return torch.cat([model(x[None]) for x in images])


def embed_images(model: nn.Module, images: Sequence[torch.Tensor], chunk_size: int) -> torch.Tensor:
    """Descriptors [B, D] of a list of [3, H, W] tensors (sizes may differ), without gradients."""
    with torch.no_grad():
        return torch.cat([_forward_chunk(model, images[i:i + chunk_size]) for i in range(0, len(images), chunk_size)])


@dataclass(frozen=True)
class Share:
    """This process's part of a batch of `total` images split across `world` processes: the batch
    positions of its images (in the order they are given) and the descriptors' dimension."""

    rows: Sequence[int]
    total: int
    world: int
    dim: int


def gather_rows(own: torch.Tensor, share: Share) -> torch.Tensor:
    """The whole batch's descriptors [total, D] from every process's rows [len(share.rows), D]."""
    import torch.distributed as dist

    device = own.device
    count = torch.tensor([len(share.rows)], device=device)
    counts = [torch.zeros_like(count) for _ in range(share.world)]
    dist.all_gather(counts, count)
    most = int(max(int(c) for c in counts))
    padded = torch.zeros(most, share.dim, dtype=own.dtype, device=device)
    padded[:len(share.rows)] = own
    rows = torch.full((most,), -1, dtype=torch.long, device=device)
    rows[:len(share.rows)] = torch.tensor(list(share.rows), dtype=torch.long, device=device)
    all_desc = [torch.zeros_like(padded) for _ in range(share.world)]
    all_rows = [torch.zeros_like(rows) for _ in range(share.world)]
    dist.all_gather(all_desc, padded)
    dist.all_gather(all_rows, rows)
    out = torch.zeros(share.total, share.dim, dtype=own.dtype, device=device)
    for desc, idx, n in zip(all_desc, all_rows, counts):
        out[idx[:int(n)]] = desc[:int(n)]
    return out


def multistage_backward(
    model: nn.Module,
    images: List[torch.Tensor],
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    chunk_size: int = 1,
    share: Optional[Share] = None,
) -> torch.Tensor:
    """Accumulate into the parameters' .grad the gradient of loss_fn(model(images)); returns the loss.

    `images` are already on the model's device and augmented (the same tensors
    serve both passes, so the recomputation sees exactly what the first pass saw).
    With `share`, `images` are this process's part of the batch and ``loss_fn`` sees the whole
    batch's descriptors (gathered from every process); every process of the group must call this.
    """
    if share is None:
        descriptors = embed_images(model, images, chunk_size).detach().requires_grad_(True)
    else:
        own = embed_images(model, images, chunk_size) if images else _blank(model, 0, share.dim)
        descriptors = gather_rows(own, share).requires_grad_(True)
    loss = loss_fn(descriptors)
    if not loss.requires_grad:  # e.g. no valid query: nothing to propagate
        return loss.detach()
    (grad,) = torch.autograd.grad(loss, descriptors)
    if share is not None:
        grad = grad[list(share.rows)] * share.world
        if not images:  # no image here, but DistributedDataParallel's all-reduce needs every process
            (model(_blank(model, 1, 3, 32, 32)).sum() * 0.0).backward()
            return loss.detach()
    starts = list(range(0, len(images), chunk_size))
    for n, start in enumerate(starts):
        # Under DistributedDataParallel, gradients are all-reduced once per step, on the
        # last chunk's backward; the earlier chunks accumulate locally (no_sync).
        sync = n == len(starts) - 1 or not hasattr(model, "no_sync")
        with contextlib.nullcontext() if sync else model.no_sync():
            out = _forward_chunk(model, images[start:start + chunk_size])
            out.backward(grad[start:start + chunk_size])
    return loss.detach()


def _blank(model: nn.Module, *shape: int) -> torch.Tensor:
    """Zeros of `shape` on the model's device, in its parameters' dtype."""
    p = next(model.parameters())
    return torch.zeros(*shape, dtype=p.dtype, device=p.device)
