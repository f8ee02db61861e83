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
"""
from __future__ import annotations

import contextlib
from typing import Callable, List, Sequence

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


def multistage_backward(
    model: nn.Module,
    images: List[torch.Tensor],
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    chunk_size: int = 1,
) -> torch.Tensor:
    """Accumulate into the parameters' .grad the gradient of loss_fn(model(images)); returns the loss.

    `images` are already on the model's device and augmented (the same tensors
    serve both passes, so the recomputation sees exactly what the first pass saw).
    """
    descriptors = embed_images(model, images, chunk_size).detach().requires_grad_(True)
    loss = loss_fn(descriptors)
    if not loss.requires_grad:  # e.g. no valid query: nothing to propagate
        return loss.detach()
    (grad,) = torch.autograd.grad(loss, descriptors)
    starts = list(range(0, len(images), chunk_size))
    for n, start in enumerate(starts):
        # Under DistributedDataParallel, gradients are all-reduced once per step, on the
        # last chunk's backward; the earlier chunks accumulate locally (no_sync).
        sync = n == len(starts) - 1 or not hasattr(model, "no_sync")
        with contextlib.nullcontext() if sync else model.no_sync():
            out = _forward_chunk(model, images[start:start + chunk_size])
            out.backward(grad[start:start + chunk_size])
    return loss.detach()
