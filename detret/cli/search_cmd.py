"""`detret search`."""
from __future__ import annotations

from typing import Optional

import typer

from ..config.choices import Protocol
from .context import rerun_command, state


def search(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Descriptor run to search (the <name> of embed-<name>)."),
    k: int = typer.Option(50, min=1, help="Results per query."),
    index: str = typer.Option("Flat", help="FAISS index_factory string: Flat (exact), HNSW32, IVF256,SQ8, ..."),
    gpu: bool = typer.Option(True, "--gpu/--no-gpu", help="Search on the GPUs FAISS sees, if any."),
    protocol: Protocol = typer.Option(Protocol.CATEGORY, help="category: one index per category (the paper's); "
                                      "all: one index of every shop photo (search-<name>@all)."),
    rerank: Optional[str] = typer.Option(None, metavar="METHOD", help="Re-rank the exact scores with a registered "
                                         "re-ranking (`detret blocks`): alpha query expansion, alpha database-side "
                                         "augmentation, diffusion, ... Writes search-<name>+<method>."),
    alpha: float = typer.Option(3.0, min=0, help="aqe, dba: the weights' exponent alpha."),
    rerank_k: int = typer.Option(10, "--rerank-k", min=1, help="aqe, dba: neighbours averaged."),
    truncation: int = typer.Option(1000, min=1, help="diffusion: photos re-ranked per query."),
    kd: int = typer.Option(50, min=1, help="diffusion: neighbours of each photo in the gallery graph."),
    kq: int = typer.Option(10, min=1, help="diffusion: a query's nearest photos it starts from."),
    force: bool = typer.Option(False, "--force", help="Recompute even if the rankings were built differently."),
) -> None:
    """Top-k shop photos of each street query within its category (one FAISS index per category).

    Writes <run_dir>/search-<name>/: topk_rows.npy, topk_scores.npy, rankings.jsonl, indexes/.
    A re-ranked search is a run of its own for detret eval: `detret eval <name> <name>+aqe`.
    """
    from ..search.rerank import PLAIN, Rerank
    from ..search.stage import run_search

    pcfg = state(ctx).pipeline_config()
    settings = Rerank(method=rerank or PLAIN, alpha=alpha, k=rerank_k, truncation=truncation, kd=kd, kq=kq)
    summary = run_search(pcfg, name, k=k, factory=index, use_gpu=gpu, protocol=protocol.value, rerank=settings,
                         force=force, command=rerun_command(ctx))
    how = summary["factory"] if settings.method == PLAIN else f"exact scores re-ranked by {settings.method}"
    folder = summary["folder"]
    typer.echo(f"{folder}: top {summary['k']} of {summary['gallery']} gallery photos for "
               f"{summary['queries']} queries ({how})")
