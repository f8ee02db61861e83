"""`detret blocks`: the registered building blocks (poolings, losses, samplers, re-rankings)."""
from __future__ import annotations

import typer

from .context import console, state


def blocks(ctx: typer.Context) -> None:
    """List the names a config or an option may give each building block, with the config's imports
    (modules of other packages that register their own) loaded first."""
    from rich.table import Table

    from ..retrieval.batch import SAMPLERS
    from ..retrieval.objective import LOSSES
    from ..retrieval.pooling import POOLINGS
    from ..search.rerank import RERANKERS

    state(ctx).pipeline_config()  # imports the config's modules, which register their blocks
    table = Table("block", "name", "what it is", "set with")
    for registry, where in ((POOLINGS, "retrieval.train.pooling"), (LOSSES, "train-retrieval --loss"),
                            (SAMPLERS, "retrieval.train.sampler"), (RERANKERS, "search --rerank")):
        for entry in registry:
            table.add_row(registry.kind, entry.name, entry.summary, where)
    console().print(table)
