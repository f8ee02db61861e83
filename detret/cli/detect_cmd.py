"""`detret detect`."""
from __future__ import annotations

from typing import Dict, List, Optional

import typer
from rich.table import Table

from ..config.choices import CropPolicy, Engine, Precision, Split, Subset
from .context import console, rerun_command, state
from .parallel_options import dist_url_option, machine_rank_option, num_gpus_option, num_machines_option


def detect(
    ctx: typer.Context,
    split: Split = typer.Option(Split.SHOP, "--split", help="shop: the gallery photos; street: the query photos."),
    subset: Subset = typer.Option(Subset.TEST, help="For --split street: the test or train pairs."),
    policy: Optional[CropPolicy] = typer.Option(None, help="Crop policy (default: the config's DETRET.CROP.POLICY, "
                                                            "'category', the paper's)."),
    objectness: Optional[float] = typer.Option(None, min=0.0, max=1.0, help="Objectness threshold (paper: 0.5)."),
    batch_size: Optional[int] = typer.Option(None, min=1, help="Photos per forward pass."),
    workers: Optional[int] = typer.Option(None, min=0, help="DataLoader workers decoding photos."),
    engine: Optional[Engine] = typer.Option(
        None, help="torch (Detectron2), or onnxruntime (the detector exported to ONNX once and kept beside its "
                   "weights; no Detectron2 at inference)."),
    precision: Optional[Precision] = typer.Option(
        None, help="fp32 (DefaultPredictor's crops); bf16 (torch: ResNet under bfloat16 autocast, faster on CPUs with "
                   "AMX and on GPUs); int8 (onnxruntime: static quantization calibrated on the shop photos)."),
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

    opts: List[str] = []
    for key, value in (("DETRET.CROP.POLICY", policy), ("DETRET.CROP.OBJECTNESS_THRESH", objectness),
                       ("DETRET.DETECT.BATCH_SIZE", batch_size), ("DETRET.DETECT.NUM_WORKERS", workers),
                       ("DETRET.DETECT.PRECISION", precision), ("DETRET.DETECT.ENGINE", engine)):
        if value is not None:
            opts += [key, str(value)]
    pcfg = state(ctx).pipeline_config()
    summary = run_detect(pcfg, split.value, subset=subset.value, run_detector=run_detector, extra_opts=opts,
                         force=force, command=rerun_command(ctx), num_processes=num_gpus,
                         num_machines=num_machines, machine_rank=machine_rank, dist_url=dist_url)
    if not summary:
        typer.echo(f"machine {machine_rank}: done (machine 0 writes the artifact)")
        return
    console().print(_summary_table(f"detect --split {split.value}", summary))


def _summary_table(title: str, summary: Dict[str, Dict]) -> Table:
    table = Table(title=title)
    for col in ("category", "photos", "skipped", "detection", "fallback", "ground truth", "fallback rate",
                "mean score"):
        table.add_column(col, justify="left" if col == "category" else "right")
    for cat, row in summary.items():
        rules = row["rules"]
        rate = "" if row["fallback_rate"] is None else f"{row['fallback_rate']:.2f}"
        score = "" if row["mean_score"] is None else f"{row['mean_score']:.2f}"
        table.add_row(cat, str(row["photos"]), str(row["skipped"]), str(rules.get("detection", 0)),
                      str(rules.get("fallback", 0)), str(rules.get("ground_truth", 0)), rate, score)
    return table
