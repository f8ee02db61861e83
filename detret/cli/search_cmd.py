"""`detret search`."""
from __future__ import annotations

import typer

from .context import rerun_command, state


def search(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Descriptor run to search (the <name> of embed-<name>)."),
    k: int = typer.Option(50, min=1, help="Results per query."),
    index: str = typer.Option("Flat", help="FAISS index_factory string: Flat (exact), HNSW32, IVF256,SQ8, ..."),
    gpu: bool = typer.Option(True, "--gpu/--no-gpu", help="Search on the GPUs FAISS sees, if any."),
    force: bool = typer.Option(False, "--force", help="Recompute even if the rankings were built differently."),
) -> None:
    """Top-k shop photos of each street query within its category (one FAISS index per category).

    Writes <run_dir>/search-<name>/: topk_rows.npy, topk_scores.npy, rankings.jsonl, indexes/.
    """
    from ..search.stage import run_search

    pcfg = state(ctx).pipeline_config()
    summary = run_search(pcfg, name, k=k, factory=index, use_gpu=gpu, force=force, command=rerun_command(ctx))
    typer.echo(f"search-{name}: top {summary['k']} of {summary['gallery']} gallery photos for "
               f"{summary['queries']} queries ({summary['factory']})")
