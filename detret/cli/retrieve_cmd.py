"""`detret embed`, `detret search`, `detret eval`."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from .app import app, rerun_command, state
from .parallel_options import dist_url_option, machine_rank_option, num_gpus_option, num_machines_option


def _floats(text: str) -> List[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated numbers, got {text!r}") from None


@app.command("embed")
def embed_cmd(
    ctx: typer.Context,
    model: Optional[List[str]] = typer.Option(
        None, "--model", "-m", help="A trained run name (tri-crops, ap-full, ...) or a checkpoint .pt; repeat for "
        "an ensemble (descriptors concatenated, then L2-normalised). Default: retrieval.models of the config."),
    gallery_crops: str = typer.Option("detected", help="detected: the detect-shop crops; full: whole shop photos."),
    scales: str = typer.Option("1", help="Comma-separated scales of each model's image size, e.g. 1,0.707."),
    name: Optional[str] = typer.Option(None, help="Name of the descriptor run (default: model names joined by +)."),
    batch_size: int = typer.Option(32, min=1, help="Crops decoded per DataLoader batch."),
    workers: int = typer.Option(2, min=0, help="DataLoader workers decoding photos."),
    precision: str = typer.Option("fp32", help="fp32, or bf16 (channels-last, bfloat16 autocast: faster on CPUs "
                                               "with AMX and on GPUs)."),
    dataset: str = typer.Option("street2shop", help="street2shop, or deepfashion2 (every item of --split)."),
    split: str = typer.Option("validation", help="DeepFashion2 split folder."),
    combine: Optional[List[str]] = typer.Option(
        None, "--combine", help="Instead of embedding: an ensemble of descriptor runs already computed (repeat; "
        "each keeps its own crops), e.g. --combine tri-full --combine tri-crops --name Tris."),
    force: bool = typer.Option(False, "--force", help="Recompute even if the descriptors were built differently."),
    num_gpus: int = num_gpus_option(),
    num_machines: int = num_machines_option(shared_run_dir=True),
    machine_rank: int = machine_rank_option(),
    dist_url: str = dist_url_option(),
) -> None:
    """Descriptors of the gallery (shop crops) and the queries (street crops of the test pairs).

    Writes <run_dir>/embed-<name>/: gallery.npy and queries.npy (float32 [N, D]),
    their row tables (*_rows.jsonl), skipped.jsonl, models.json. Resumable.
    """
    from ..embed.stage import run_combine, run_embed

    pcfg = state(ctx).pipeline_config()
    if dataset == "deepfashion2":
        from ..embed.deepfashion2 import run_embed_df2

        summary = run_embed_df2(pcfg, split=split, models=model, name=name, workers=workers, force=force,
                                command=rerun_command(ctx))
        typer.echo(f"embed-df2-{summary['name']}: {summary['consumer']} consumer and {summary['shop']} shop items "
                   f"({summary['skipped']} skipped)")
        return
    if dataset != "street2shop":
        raise typer.BadParameter(f"--dataset must be street2shop or deepfashion2, got {dataset!r}")
    if combine:
        if not name:
            raise typer.BadParameter("--combine needs --name for the ensemble")
        summary = run_combine(pcfg, combine, name, force=force, command=rerun_command(ctx))
    else:
        summary = run_embed(pcfg, models=model, gallery_crops=gallery_crops, scales=_floats(scales), name=name,
                            batch_size=batch_size, workers=workers, precision=precision, force=force,
                            command=rerun_command(ctx), num_processes=num_gpus, num_machines=num_machines,
                            machine_rank=machine_rank, dist_url=dist_url)
        if "machine_rank" in summary:
            typer.echo(f"machine {machine_rank}: done (machine 0 assembles the descriptors)")
            return
    typer.echo(f"embed-{summary['name']}: {summary['gallery']} gallery and {summary['queries']} query "
               f"descriptors of dimension {summary['dim']}, {summary['skipped']} photos skipped")


@app.command("search")
def search_cmd(
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


@app.command("eval")
def eval_cmd(
    ctx: typer.Context,
    names: Optional[List[str]] = typer.Argument(None, help="Descriptor runs to compare (default: every embed-*)."),
    per_category: bool = typer.Option(False, "--per-category", help="Print every category, not only the means."),
    ks: Optional[str] = typer.Option(None, help="Comma-separated K (default: 1,20; DeepFashion2: 1,5,10,20)."),
    dataset: str = typer.Option("street2shop", help="street2shop (Table 1) or deepfashion2 (Recall@K both ways)."),
    force: bool = typer.Option(False, "--force", help="Recompute even if the metrics exist."),
) -> None:
    """mAP, Acc@1 and Acc@20 per category and averaged, as the paper's Table 1, one column per run.

    Writes <run_dir>/eval/: metrics.json, table.md, table.csv, acc_at_k.png. With
    --dataset deepfashion2: Recall@K consumer-to-shop and shop-to-consumer in <run_dir>/eval-df2/.
    """
    from ..evaluate.report import table_rows
    from ..evaluate.stage import run_eval

    pcfg = state(ctx).pipeline_config()
    if dataset == "deepfashion2":
        from ..embed.deepfashion2 import run_eval_df2

        if not names:
            raise typer.BadParameter("name the DeepFashion2 descriptor runs to evaluate (embed-df2-<name>)")
        run_eval_df2(pcfg, names, ks=[int(k) for k in _floats(ks or "1,5,10,20")], force=force,
                     command=rerun_command(ctx))
        typer.echo((Path(pcfg.run_dir) / "eval-df2" / "table.md").read_text())
        return
    ks_list = [int(k) for k in _floats(ks or "1,20")]
    results = run_eval(pcfg, names or [], ks=ks_list, force=force, command=rerun_command(ctx))
    table = Table(title="Exact Street2Shop retrieval (%), within category")
    table.add_column("category")
    table.add_column("metric")
    for run in results:
        table.add_column(run, justify="right")
    for row in table_rows(results, ks_list):
        if per_category or row[0].startswith("mean"):
            table.add_row(*row)
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)
    console.print(table)
    first = next(iter(results.values()))
    missing = sum(r["queries_without_positive"] for r in first["per_category"].values())
    if missing:
        console.print(f"{missing} queries have no positive in the gallery and are excluded")
