"""Where detret works around Detectron2: the two places, kept in one module.

1. :class:`AtomicDetectionCheckpointer`: Detectron2's ``DetectionCheckpointer.save`` (fvcore's
   ``Checkpointer.save``) opens the checkpoint and ``last_checkpoint`` for writing in place, so a
   run killed while saving leaves a torn file that ``--resume`` would then load. This subclass
   writes both atomically. ``DefaultTrainer`` builds its checkpointer inside ``__init__`` and
   hands that one object to its ``PeriodicCheckpointer`` hook, so the trainer retypes it
   (:func:`make_checkpointer_atomic`) instead of rebuilding the hook.
2. :func:`ddp_on_cpu`: Detectron2's ``create_ddp_model`` (called by ``DefaultTrainer.__init__``
   through the module attribute ``detectron2.engine.defaults.create_ddp_model``) always passes
   ``device_ids=[local rank]``, which ``DistributedDataParallel`` refuses for a CPU module; for
   CPU training in several (gloo) processes it gets ``device_ids=None``.

``tests/detect/test_d2_compat.py`` checks the Detectron2 facts both rely on, so an upgrade
that changes them fails loudly there instead of silently undoing the workaround.
"""
from __future__ import annotations

import contextlib
import functools
import os
from typing import Iterator

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.utils import comm

from ..runs.atomic import atomic_path, atomic_write_text


class AtomicDetectionCheckpointer(DetectionCheckpointer):
    """Detectron2's checkpointer with atomic writes of the checkpoint and of ``last_checkpoint``."""

    def save(self, name: str, **kwargs) -> None:
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        data.update({key: obj.state_dict() for key, obj in self.checkpointables.items()})
        data.update(kwargs)
        basename = f"{name}.pth"
        self.logger.info("Saving checkpoint to %s", os.path.join(self.save_dir, basename))
        with atomic_path(os.path.join(self.save_dir, basename)) as tmp:
            torch.save(data, tmp)
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        atomic_write_text(os.path.join(self.save_dir, "last_checkpoint"), last_filename_basename)


def make_checkpointer_atomic(trainer) -> None:
    """Retype a ``DefaultTrainer``'s checkpointer (the object its PeriodicCheckpointer hook holds)."""
    if not isinstance(trainer.checkpointer, DetectionCheckpointer):
        raise TypeError(f"expected Detectron2's DetectionCheckpointer, got {type(trainer.checkpointer).__name__}")
    trainer.checkpointer.__class__ = AtomicDetectionCheckpointer


@contextlib.contextmanager
def ddp_on_cpu(device: str) -> Iterator[None]:
    """Within the block, ``create_ddp_model`` passes ``device_ids=None`` when training on CPUs in several processes."""
    from detectron2.engine import defaults

    if torch.device(device).type != "cpu" or comm.get_world_size() == 1:
        yield
        return
    original = defaults.create_ddp_model
    defaults.create_ddp_model = functools.partial(original, device_ids=None)
    try:
        yield
    finally:
        defaults.create_ddp_model = original
