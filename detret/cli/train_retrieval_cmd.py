"""`detret train-retrieval`."""
from __future__ import annotations

from typing import Optional

import typer

from ..config.choices import ShopCrops
from .context import rerun_command, state
from .parallel_options import dist_url_option, machine_rank_option, num_gpus_option, num_machines_option


def train_retrieval(
    ctx: typer.Context,
    loss: str = typer.Option(..., "--loss", help="A registered loss (`detret blocks`): the paper's triplet (eq. 2) "
                                                  "and AP (eq. 3-4) losses, Morelli et al.'s hardest negative, "
                                                  "Ibrahim et al.'s four (best with --set retrieval.train.sampler=pk), "
                                                  "or one a module in the config's imports registers."),
    shop_crops: ShopCrops = typer.Option(ShopCrops.DETECTED, "--shop-crops",
                                         help="detected: the detect-shop crops (DB C); full: whole photos (DB F)."),
    name: Optional[str] = typer.Option(None, help="Run name (default: tri-crops, tri-full, ap-crops, ap-full)."),
    epochs: Optional[int] = typer.Option(None, min=1, help="Overrides retrieval.train.epochs."),
    force: bool = typer.Option(False, "--force", help="Retrain even if the run holds a model trained differently."),
    resume: bool = typer.Option(False, "--resume", help="Require an interrupted run to continue (a plain rerun "
                                                        "also resumes one when there is one)."),
    num_gpus: int = num_gpus_option(),
    num_machines: int = num_machines_option(shared_run_dir=False),
    machine_rank: int = machine_rank_option(),
    dist_url: str = dist_url_option(),
) -> None:
    """Train the GeM retrieval network: street crops (annotated boxes) against shop crops.

    Hyper-parameters are the pipeline config's retrieval.train keys (`detret config keys`),
    e.g. --set retrieval.train.architecture=resnet18. Writes <run_dir>/retrieval-<name>/:
    model.pt (best validation mAP, self-describing), checkpoint_last.pt, metrics.json.
    Rerunning an interrupted command resumes after the last finished epoch.
    """
    from ..retrieval.train import run_train_retrieval

    extra = [f"retrieval.train.epochs={epochs}"] if epochs else []
    pcfg = state(ctx).pipeline_config(extra)
    summary = run_train_retrieval(pcfg, loss, shop_crops.value, name=name, force=force, resume=resume,
                                  command=rerun_command(ctx), num_gpus=num_gpus, num_machines=num_machines,
                                  machine_rank=machine_rank, dist_url=dist_url)
    if "machine_rank" in summary:
        typer.echo(f"machine {summary['machine_rank']}: done (the artifacts are on machine 0)")
        return

    def fmt(v):
        return "n/a" if v is None else f"{100 * v:.1f}"

    typer.echo(f"{summary['name']}: validation mAP {fmt(summary['untrained_val_map'])} untrained -> "
               f"{fmt(summary['best_val_map'])} best ({summary['queries']['train']} training queries, "
               f"{summary['queries']['val']} validation queries)")
