"""`detret embed`."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ..config.choices import DeepFashion2Split, Engine, Precision, ShopCrops
from .context import comma_floats, rerun_command, state
from .parallel_options import dist_url_option, machine_rank_option, num_gpus_option, num_machines_option


def embed(
    ctx: typer.Context,
    model: Optional[List[str]] = typer.Option(
        None, "--model", "-m", help="A trained run name (tri-crops, ap-full, ...) or a checkpoint .pt; repeat for "
        "an ensemble (descriptors concatenated, then L2-normalised). Default: retrieval.models of the config."),
    descriptor: Optional[str] = typer.Option(
        None, "--descriptor", help="A foundation model used without training: open_clip:NAME (a built-in "
        "architecture with --weights FILE, or hf-hub:REPO), timm:NAME or hf:REPO_OR_FOLDER, e.g. "
        "open_clip:hf-hub:Marqo/marqo-fashionSigLIP. Added to --model (an ensemble) when both are given."),
    weights: Optional[Path] = typer.Option(
        None, "--weights", help="The foundation model's weights: a folder in its library's own format, or a "
        "weights file of a built-in architecture. Default: the Hugging Face cache (downloaded when online)."),
    gallery_crops: ShopCrops = typer.Option(ShopCrops.DETECTED, help="detected: the detect-shop crops; full: whole "
                                                                     "shop photos."),
    scales: str = typer.Option("1", help="Comma-separated scales of each model's image size, e.g. 1,0.707."),
    crop: str = typer.Option("box", "--crop", help="box: the crop's pixels; mask: the chosen detection's Mask R-CNN "
                             "mask removes the background first (needs masks recorded by detect: "
                             "DETRET.DETECT.MASKS True, for the shop and the street photos)."),
    mask_fill: str = typer.Option("white", "--mask-fill", help="With --crop mask: white, or mean (ImageNet's mean "
                                  "colour, which normalisation maps to 0)."),
    name: Optional[str] = typer.Option(None, help="Name of the descriptor run (default: model names joined by +)."),
    batch_size: int = typer.Option(32, min=1, help="Crops decoded per DataLoader batch."),
    workers: int = typer.Option(2, min=0, help="DataLoader workers decoding photos."),
    engine: Engine = typer.Option(Engine.TORCH, help="torch, or onnxruntime (each trained network exported to ONNX "
                                                     "once and kept beside its checkpoint)."),
    precision: Precision = typer.Option(Precision.FP32, help="fp32; bf16 (torch: channels-last, bfloat16 autocast, "
                                        "faster on CPUs with AMX and on GPUs); int8 (onnxruntime: static quantization "
                                        "calibrated on the gallery crops)."),
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
    from ..detect.masks import CropShape
    from ..embed.stage import run_embed

    pcfg = state(ctx).pipeline_config()
    models = [*(model or []), *([descriptor] if descriptor else [])] or None
    summary = run_embed(pcfg, models=models, weights=weights, crop=CropShape(crop, mask_fill),
                        gallery_crops=gallery_crops.value, scales=comma_floats(scales, "--scales"),
                        name=name, batch_size=batch_size, workers=workers, precision=precision.value, force=force,
                        engine=engine.value,
                        command=rerun_command(ctx), num_processes=num_gpus, num_machines=num_machines,
                        machine_rank=machine_rank, dist_url=dist_url)
    if "machine_rank" in summary:
        typer.echo(f"machine {machine_rank}: done (machine 0 assembles the descriptors)")
        return
    typer.echo(f"embed-{summary['name']}: {summary['gallery']} gallery and {summary['queries']} query "
               f"descriptors of dimension {summary['dim']}, {summary['skipped']} photos skipped")


def combine(
    ctx: typer.Context,
    runs: List[str] = typer.Argument(..., help="Descriptor runs already computed (embed-<run>), two or more; each "
                                               "keeps its own crops."),
    name: str = typer.Option(..., "--name", help="Name of the ensemble's descriptor run, e.g. Tris."),
    force: bool = typer.Option(False, "--force", help="Recompute even if the ensemble was built differently."),
) -> None:
    """An ensemble of descriptor runs: each row's descriptors concatenated, then L2-normalised (the paper's
    Tris = Tri DB F + Tri DB C). Writes <run_dir>/embed-<name>/ as `embed` does."""
    from ..embed.combine import run_combine

    if len(runs) < 2:
        raise typer.BadParameter("an ensemble needs two or more descriptor runs", param_hint="RUNS")
    summary = run_combine(state(ctx).pipeline_config(), runs, name, force=force, command=rerun_command(ctx))
    typer.echo(f"embed-{summary['name']}: {summary['gallery']} gallery and {summary['queries']} query "
               f"descriptors of dimension {summary['dim']}, {summary['skipped']} photos skipped")


def whiten(
    ctx: typer.Context,
    run: str = typer.Argument(..., help="A descriptor run already computed (embed-<run>): single, ensemble."),
    method: str = typer.Option("lw", "--method", help="lw: learned from matching street/shop training pairs "
                                                      "(Radenovic et al.); pca: PCA whitening of the training "
                                                      "descriptors."),
    dim: Optional[int] = typer.Option(None, "--dim", min=1, help="Dimensions kept (d'; default 256)."),
    reduce: Optional[int] = typer.Option(None, "--reduce", min=1, help="Or: d' = the run's dimension / this."),
    name: Optional[str] = typer.Option(None, "--name", help="Name of the whitened run (default <run>-<method><dim>)."),
    max_pairs: int = typer.Option(5000, "--max-pairs", min=2, help="Training pairs it learns from, at most."),
    ridge: float = typer.Option(0.1, "--ridge", min=0.0, help="Added to the inverted matrix, times its mean "
                                                             "eigenvalue (fewer pairs than dimensions)."),
    device: str = typer.Option("cpu", "--device", help="Device for the run's models (training photos)."),
    force: bool = typer.Option(False, "--force", help="Recompute even if the run was whitened differently."),
) -> None:
    """Whiten a descriptor run and reduce it to d' dimensions, learned once from the training split: a new
    descriptor run (<run_dir>/embed-<name>/) that search, eval, catalogues and the service use as any other."""
    from ..embed.whiten import run_whiten
    from ..utils.device import resolve_device

    summary = run_whiten(state(ctx).pipeline_config(), run, method=method, dim=dim, reduce=reduce, name=name,
                         max_pairs=max_pairs, ridge=ridge, device=resolve_device(device), force=force,
                         command=rerun_command(ctx))
    typer.echo(f"embed-{summary['name']}: {summary['gallery']} gallery and {summary['queries']} query descriptors "
               f"of dimension {summary['dim']} ({summary['method']}, learned on {summary['pairs']} training pairs)")


def embed_df2(
    ctx: typer.Context,
    model: List[str] = typer.Option(..., "--model", "-m", help="A trained run name or a checkpoint .pt; repeat "
                                                               "for an ensemble."),
    name: Optional[str] = typer.Option(None, help="Name of the descriptor run (default: model names joined by +)."),
    split: DeepFashion2Split = typer.Option(DeepFashion2Split.VALIDATION, help="DeepFashion2 split folder."),
    workers: int = typer.Option(2, min=0, help="DataLoader workers decoding photos."),
    force: bool = typer.Option(False, "--force", help="Recompute even if the descriptors were built differently."),
) -> None:
    """Descriptors of every DeepFashion2 item of --split (consumer and shop), cut by its box: for
    `detret eval-df2`. Writes <run_dir>/embed-df2-<name>/."""
    from ..embed.deepfashion2 import run_embed_df2

    summary = run_embed_df2(state(ctx).pipeline_config(), split=split.value, models=model, name=name,
                            workers=workers, force=force, command=rerun_command(ctx))
    typer.echo(f"embed-df2-{summary['name']}: {summary['consumer']} consumer and {summary['shop']} shop items "
               f"({summary['skipped']} skipped)")

