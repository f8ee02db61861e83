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
gradients summed over processes (one all-reduce per step) are those of one process on the whole batch.
The sum is taken here rather than by DistributedDataParallel, whose averaging and unused-parameter
bookkeeping fit neither rows of one gradient nor a two-stream network whose street stream may see no
image in one process.

Photos of two domains (a two-stream network): ``domains`` names each image's, and the model is
called as ``model(x, domain)`` on runs of one domain.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

import torch
from torch import nn

Domains = Optional[Sequence[str]]


def _same_shape_forward(model: nn.Module, images: Sequence[torch.Tensor], domain: Optional[str]) -> torch.Tensor:
    def call(x):
        return model(x) if domain is None else model(x, domain)

    shapes = {tuple(x.shape) for x in images}
    if len(shapes) == 1:
        return call(torch.stack(list(images)))
    return torch.cat([call(x[None]) for x in images])


def _forward_chunk(model: nn.Module, images: Sequence[torch.Tensor], domains: Domains = None) -> torch.Tensor:
    if domains is None:
        return _same_shape_forward(model, images, None)
    runs = itertools.groupby(zip(images, domains), key=lambda pair: pair[1])
    return torch.cat([_same_shape_forward(model, [x for x, _ in run], domain) for domain, run in runs])


def embed_images(model: nn.Module, images: Sequence[torch.Tensor], chunk_size: int, domains: Domains = None
                 ) -> torch.Tensor:
    """Descriptors [B, D] of a list of [3, H, W] tensors (sizes may differ), without gradients."""
    with torch.no_grad():
        return torch.cat([_forward_chunk(model, images[i:i + chunk_size], _part(domains, i, chunk_size))
                          for i in range(0, len(images), chunk_size)])


def _part(domains: Domains, start: int, size: int) -> Domains:
    return None if domains is None else domains[start:start + size]


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
    domains: Domains = None,
) -> torch.Tensor:
    """Accumulate into the parameters' .grad the gradient of loss_fn(model(images)); returns the loss.

    `images` are already on the model's device and augmented (the same tensors
    serve both passes, so the recomputation sees exactly what the first pass saw).
    With `share`, `images` are this process's part of the batch, ``loss_fn`` sees the whole
    batch's descriptors (gathered from every process), and the parameter gradients are summed over
    the processes; every process of the group must call this. `domains`: each image's domain.
    """
    if share is None:
        descriptors = embed_images(model, images, chunk_size, domains).detach().requires_grad_(True)
    else:
        own = embed_images(model, images, chunk_size, domains) if images else _zeros(model, 0, share.dim)
        descriptors = gather_rows(own, share).requires_grad_(True)
    loss = loss_fn(descriptors)
    if not loss.requires_grad:  # e.g. no valid query: nothing to propagate (alike in every process)
        return loss.detach()
    (grad,) = torch.autograd.grad(loss, descriptors)
    if share is not None:
        grad = grad[list(share.rows)]
    for start in range(0, len(images), chunk_size):
        out = _forward_chunk(model, images[start:start + chunk_size], _part(domains, start, chunk_size))
        out.backward(grad[start:start + chunk_size])
    if share is not None:
        sum_gradients(model)
    return loss.detach()


def sum_gradients(model: nn.Module) -> None:
    """Each parameter's .grad summed over the processes, in one all-reduce. A parameter no process gave a
    gradient keeps none (as in one process: the optimiser then skips it); where only some did, the others
    count as zeros."""
    import torch.distributed as dist

    params = [p for p in model.parameters() if p.requires_grad]
    had = [p.grad is not None for p in params]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flags = torch.tensor(had, dtype=params[0].grad.dtype, device=params[0].grad.device)
    flat = torch.cat([p.grad.reshape(-1) for p in params] + [flags])
    dist.all_reduce(flat)
    offset = 0
    for p in params:
        p.grad.copy_(flat[offset:offset + p.numel()].view_as(p))
        offset += p.numel()
    for p, anyone in zip(params, flat[offset:].tolist()):
        if anyone == 0:
            p.grad = None


def _zeros(model: nn.Module, *shape: int) -> torch.Tensor:
    """Zeros of `shape` on the model's device, in its parameters' dtype."""
    p = next(model.parameters())
    return torch.zeros(*shape, dtype=p.dtype, device=p.device)
