"""`detret data ...`: datasets (the embedded synthetic one)."""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from .app import app, rerun_command

data_app = typer.Typer(help="Datasets: generate the embedded synthetic dataset.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("synth")
def synth(
    ctx: typer.Context,
    out: Path = typer.Option(Path("runs/synth"), "--out", "-o", help="Folder to write the dataset into.",
                             file_okay=False),
    seed: int = typer.Option(0, help="Random seed; the same seed gives byte-identical files."),
    products: int = typer.Option(200, help="Products with street photos (split into train and test)."),
    distractors: int = typer.Option(100, help="Gallery-only products (shop photos, no street photo)."),
    test_fraction: float = typer.Option(0.5, help="Share of the products whose street photos are test queries."),
    modanet_images: int = typer.Option(400, help="Annotated ModaNet-style photos for detector training."),
    force: bool = typer.Option(False, "--force", help="Rebuild even if OUT holds a dataset made differently."),
) -> None:
    """Write the embedded synthetic dataset in the ModaNet and Exact Street2Shop formats.

    OUT gets modanet/ (COCO instances JSON with polygons, photos), street2shop/
    (meta/json/{retrieval,train_pairs,test_pairs}_<cat>.json, photos named by
    9-digit id), a stage manifest, and detret.yaml, a pipeline config pointing
    at the data: run the next stages with `detret --config OUT/detret.yaml ...`.
    """
    from ..data.synth.generate import SynthConfig, generate

    cfg = SynthConfig(seed=seed, n_products=products, n_distractors=distractors, test_fraction=test_fraction,
                      n_modanet_train=modanet_images, n_modanet_val=max(1, modanet_images // 10))
    _check_positive(cfg)
    summary = generate(cfg, out, force=force, command=rerun_command(ctx))
    _print_summary(summary, out)


def _check_positive(cfg) -> None:
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, (int, float)) and value < 0:
            raise typer.BadParameter(f"{f.name} must not be negative (got {value})")
    if not 0.0 < cfg.test_fraction < 1.0:
        raise typer.BadParameter(f"--test-fraction must lie strictly between 0 and 1 (got {cfg.test_fraction})")


def _print_summary(summary: dict, out: Path) -> None:
    table = Table(title=f"Synthetic Street2Shop in {out / 'street2shop'}")
    for col in ("category", "gallery photos", "train pairs", "test pairs"):
        table.add_column(col, justify="right" if col != "category" else "left")
    for cat, row in summary["street2shop"].items():
        table.add_row(cat, str(row["gallery"]), str(row["train_pairs"]), str(row["test_pairs"]))
    console = Console()
    console.print(table)
    m = summary["modanet"]
    console.print(
        f"ModaNet-style: {m['train']['images']} annotated photos ({m['train']['annotations']} garments), "
        f"{m['val']['images']} unannotated val photos in {out / 'modanet'}\n"
        f"Pipeline config: {out / 'detret.yaml'}"
    )
