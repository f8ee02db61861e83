"""`detret train-detector`."""
from __future__ import annotations

from typing import List, Optional

import typer

from .context import rerun_command, state
from .parallel_options import dist_url_option, machine_rank_option, num_gpus_option, num_machines_option


def train_detector(
    ctx: typer.Context,
    opts: Optional[List[str]] = typer.Argument(
        None, help="Detectron2 KEY VALUE overrides, e.g. SOLVER.MAX_ITER 200 SOLVER.IMS_PER_BATCH 8."),
    detector_config: Optional[str] = typer.Option(
        None, "--detector-config", help="Detectron2 config: a file, a name in detectron_configs/, or zoo:<path>."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint of the run."),
    force: bool = typer.Option(False, "--force", help="Retrain even if the run holds a detector trained differently."),
    num_gpus: int = num_gpus_option(),
    num_machines: int = num_machines_option(shared_run_dir=False),
    machine_rank: int = machine_rank_option(),
    dist_url: str = dist_url_option(),
) -> None:
    """Train the clothing detector on ModaNet with Detectron2, then evaluate it on the held-out split.

    Writes into <run_dir>/detector/: checkpoints, model_final.pth, config.yaml,
    metrics.json, log.txt and evaluation.json (COCO box AP, AP50, per-category AP).
    """
    from ..detect.train import run_train_detector

    extra = [f"detector.config_file={detector_config}"] if detector_config else []
    pcfg = state(ctx).pipeline_config(extra)
    result = run_train_detector(pcfg, opts=list(opts or []), resume=resume, force=force, num_gpus=num_gpus,
                                num_machines=num_machines, machine_rank=machine_rank, dist_url=dist_url,
                                command=rerun_command(ctx))
    bbox = result["results"].get("bbox", {})

    def fmt(v):
        return "n/a (no detection)" if v is None else f"{v:.1f}"

    if bbox:
        typer.echo(f"held-out {', '.join(result['dataset'])}: box AP {fmt(bbox.get('AP'))}, "
                   f"AP50 {fmt(bbox.get('AP50'))}")
