"""The torch device, a parameter of every stage (never a hard-coded `.cuda()`)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config.choices import DEVICE_PATTERN, DEVICES
from ..errors import InputError


def resolve_device(name: str) -> torch.device:
    """"auto" -> CUDA when present, else CPU; an explicit device must exist.

    Raises ValueError before any work starts when the config asks for a GPU
    this machine does not have.
    """
    if not DEVICE_PATTERN.match(name):
        raise InputError(f"device {name!r} is not one of {DEVICES}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {name!r} asked for, but torch sees no CUDA GPU here; use --set device=cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InputError(f"device {name!r} asked for, but only {torch.cuda.device_count()} CUDA device(s) exist")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise InputError("device 'mps' asked for, but MPS is not available here")
    return device


def world_size(num_processes: int, num_machines: int) -> int:
    """Processes in a data-parallel run of ``num_processes`` per machine (0 or 1: one) on ``num_machines``."""
    return max(num_processes, 1) * num_machines


@dataclass(frozen=True)
class DataParallel:
    """How a stage runs data-parallel (the CLI's ``--num-gpus``, ``--num-machines``, ``--machine-rank``,
    ``--dist-url``); :meth:`launch` starts the processes through Detectron2's ``launch``."""

    num_processes: int = 1     # per machine; 0 or 1: this process alone
    num_machines: int = 1
    machine_rank: int = 0
    dist_url: str = "auto"

    @property
    def world(self) -> int:
        return world_size(self.num_processes, self.num_machines)

    def launch(self, worker, *args) -> None:
        """``worker(*args)`` in every process of this machine's share of the group; returns when they end.
        Each process first imports the modules the config's ``imports`` named here (spawned processes start
        afresh: their building blocks must be registered again)."""
        from detectron2.engine import launch

        from ..registry import imported_blocks

        launch(_with_blocks, max(self.num_processes, 1), num_machines=self.num_machines,
               machine_rank=self.machine_rank, dist_url=self.dist_url, args=(imported_blocks(), worker, *args))


def _with_blocks(modules, worker, *args) -> None:
    """In a spawned process: register the building blocks of ``modules``, then run the worker."""
    from ..registry import import_blocks

    import_blocks(modules, "the pipeline config's imports")
    worker(*args)


def data_parallel_device(device_name: str) -> torch.device:
    """The device of this process inside a Detectron2 ``launch`` group.

    CUDA: the process's own GPU (its local rank). CPU: the process takes its share of
    the cores (``torch.set_num_threads``) instead of every process using all of them.
    """
    import os

    from detectron2.utils import comm

    device = torch.device(device_name)
    if device.type == "cuda":
        return torch.device("cuda", comm.get_local_rank())
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // comm.get_local_size()))
    return device
