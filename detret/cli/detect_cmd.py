"""`detret train-detector` and `detret detect`."""
from __future__ import annotations

from enum import Enum
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from .app import app, rerun_command, state
from .parallel_options import dist_url_option, machine_rank_option, num_gpus_option, num_machines_option


class Split(str, Enum):
    shop = "shop"
    street = "street"


class Policy(str, Enum):
    category = "category"
    top1 = "top1"
    full = "full"


@app.command("train-detector")
def train_detector_cmd(
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


@app.command("detect")
def detect_cmd(
    ctx: typer.Context,
    split: Split = typer.Option(Split.shop, "--split", help="shop: the gallery photos; street: the query photos."),
    subset: str = typer.Option("test", help="For --split street: the test or train pairs."),
    policy: Optional[Policy] = typer.Option(None, help="Crop policy (default: the config's DETRET.CROP.POLICY, "
                                                        "'category', the paper's)."),
    objectness: Optional[float] = typer.Option(None, min=0.0, max=1.0, help="Objectness threshold (paper: 0.5)."),
    batch_size: Optional[int] = typer.Option(None, min=1, help="Photos per forward pass."),
    workers: Optional[int] = typer.Option(None, min=0, help="DataLoader workers decoding photos."),
    precision: Optional[str] = typer.Option(None, help="fp32 (DefaultPredictor's crops) or bf16 (ResNet under "
                                                       "bfloat16 autocast: faster on CPUs with AMX and on GPUs)."),
    run_detector: bool = typer.Option(True, "--run-detector/--no-run-detector",
                                      help="For street photos: also record the detector's output (for figures)."),
    force: bool = typer.Option(False, "--force", help="Recompute even if the artifact was built differently."),
    num_gpus: int = num_gpus_option(),
    num_machines: int = num_machines_option(shared_run_dir=True),
    machine_rank: int = machine_rank_option(),
    dist_url: str = dist_url_option(),
) -> None:
    """Crop every photo of a split: detector + the paper's policy (shop), annotated boxes (street).

    Writes <run_dir>/detect-shop/ or detect-street-<subset>/: detections.jsonl
    (per photo: size, detections with objectness, the crop and the rule that
    chose it), summary.json, manifest.json. Resumable: rerun the same command
    after an interruption.
    """
    from ..detect.stage import run_detect

    if subset not in ("test", "train"):
        raise typer.BadParameter(f"--subset must be test or train, got {subset!r}")
    opts: List[str] = []
    for key, value in (("DETRET.CROP.POLICY", policy.value if policy else None),
                       ("DETRET.CROP.OBJECTNESS_THRESH", objectness), ("DETRET.DETECT.BATCH_SIZE", batch_size),
                       ("DETRET.DETECT.NUM_WORKERS", workers), ("DETRET.DETECT.PRECISION", precision)):
        if value is not None:
            opts += [key, str(value)]
    pcfg = state(ctx).pipeline_config()
    summary = run_detect(pcfg, split.value, subset=subset, run_detector=run_detector, extra_opts=opts,
                         force=force, command=rerun_command(ctx), num_processes=num_gpus,
                         num_machines=num_machines, machine_rank=machine_rank, dist_url=dist_url)
    if not summary:
        typer.echo(f"machine {machine_rank}: done (machine 0 writes the artifact)")
        return
    table = Table(title=f"detect --split {split.value}")
    for col in ("category", "photos", "skipped", "detection", "fallback", "ground truth", "fallback rate",
                "mean score"):
        table.add_column(col, justify="left" if col == "category" else "right")
    for cat, row in summary.items():
        rules = row["rules"]
        rate = "" if row["fallback_rate"] is None else f"{row['fallback_rate']:.2f}"
        score = "" if row["mean_score"] is None else f"{row['mean_score']:.2f}"
        table.add_row(cat, str(row["photos"]), str(row["skipped"]), str(rules.get("detection", 0)),
                      str(rules.get("fallback", 0)), str(rules.get("ground_truth", 0)), rate, score)
    Console().print(table)
