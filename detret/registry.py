"""Named building blocks: the poolings, losses, samplers and re-rankers detret can be told to use.

A :class:`Registry` maps a name (the value a config key or a command-line option takes) to one
entry, an object that carries the block and what the rest of detret needs to know of it (for a
loss: the batches it learns from; for a pooling: whether its exported graph has a fixed input size).
The config check, the command line's help, the export and the documentation read the registry, so
a new block is one registration in its own module:

    from detret.retrieval.pooling import POOLINGS, PoolingEntry

    POOLINGS.register(PoolingEntry("softmax-pool", build=lambda gem_p: SoftmaxPool(), summary="..."))

A module outside the package registers its blocks when it is imported; the pipeline config's
``imports`` list names such modules, so a config alone can train with them (``imports:
[my_project.blocks]``, then ``retrieval.train.pooling: softmax-pool``).

Detectron2's ``Registry`` (fvcore) keeps the same idea; this one adds what detret's error model
asks for: an unknown name is an :class:`~detret.errors.InputError` naming the setting and the
valid names in registration order, the order the documentation lists them in, and a name is
registered once (a second registration of a name is a bug in the registering module, not a choice).
"""
from __future__ import annotations

import importlib
from typing import Dict, Generic, Iterator, List, Protocol, Sequence, Type, TypeVar

from .errors import InputError


class Named(Protocol):
    name: str
    summary: str


EntryT = TypeVar("EntryT", bound=Named)


class Registry(Generic[EntryT]):
    """Entries by name, in registration order."""

    def __init__(self, kind: str) -> None:
        self.kind = kind  # "pooling", "loss": what the error messages call an entry
        self._entries: Dict[str, EntryT] = {}

    def register(self, entry: EntryT) -> EntryT:
        """Add `entry` under ``entry.name``; a name already taken is an error."""
        if not isinstance(entry.name, str) or not entry.name or entry.name != entry.name.strip():
            raise ValueError(f"a {self.kind} needs a non-empty name without surrounding spaces, got {entry.name!r}")
        if entry.name in self._entries:
            raise ValueError(f"{self.kind} {entry.name!r} is registered already")
        self._entries[entry.name] = entry
        return entry

    def get(self, name: str, what: str | None = None, error: Type[InputError] = InputError) -> EntryT:
        """The entry `name`; else `error` naming `what` (the setting, default the kind) and the valid names."""
        entry = self._entries.get(name) if isinstance(name, str) else None
        if entry is None:
            raise error(f"{what or self.kind} {name!r} is not one of {self.choices()}")
        return entry

    def names(self) -> List[str]:
        return list(self._entries)

    def choices(self) -> str:
        """"a, b, c": the registered names, for help texts and error messages."""
        return ", ".join(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[EntryT]:
        return iter(list(self._entries.values()))

    def __len__(self) -> int:
        return len(self._entries)


_IMPORTED: List[str] = []  # modules import_blocks imported in this process, in order


def import_blocks(modules: Sequence[str], source: str) -> None:
    """Import the modules a config names in ``imports`` (each registers its blocks when imported);
    a module that cannot be imported is an error naming `source` and the module."""
    for module in modules:
        if not isinstance(module, str) or not module.strip():
            raise InputError(f"{source}: imports must list module names, got {module!r}")
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise InputError(f"{source}: imports: cannot import {module!r} ({exc})") from exc
        if module not in _IMPORTED:
            _IMPORTED.append(module)


def imported_blocks() -> List[str]:
    """The modules of blocks this process imported (what a spawned worker process imports again)."""
    return list(_IMPORTED)
