"""`detret data ...`: datasets (the embedded synthetic one)."""
from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..config.choices import Dataset, DeepFashion2Split
from .context import console, rerun_command

data_app = typer.Typer(help="Datasets: generate the embedded synthetic dataset, validate a dataset on disk.",
                       no_args_is_help=True)


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
    printer = console()
    printer.print(table)
    m = summary["modanet"]
    printer.print(
        f"ModaNet-style: {m['train']['images']} annotated photos ({m['train']['annotations']} garments), "
        f"{m['val']['images']} unannotated val photos in {out / 'modanet'}\n"
        f"Pipeline config: {out / 'detret.yaml'}"
    )


@data_app.command("check")
def check(
    dataset: Dataset = typer.Option(..., "--dataset", "-d", help="Which dataset format ROOT holds."),
    root: Path = typer.Option(..., "--root", "-r", help="Dataset folder, laid out as in datasets/README.md.",
                              file_okay=False),
    split: DeepFashion2Split = typer.Option(DeepFashion2Split.VALIDATION, help="DeepFashion2 split folder."),
    annotations: Optional[Path] = typer.Option(
        None, help="ModaNet annotation JSON (default: ROOT/annotations/modanet2018_instances_train.json).",
        dir_okay=False),
    decode: bool = typer.Option(True, "--decode/--no-decode",
                                help="Decode every photo fully (slower), or read only headers."),
    workers: int = typer.Option(4, min=1, help="Threads reading photos."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    strict: bool = typer.Option(False, "--strict", help="Exit with 1 when any problem is found."),
) -> None:
    """Validate a dataset on disk: missing and undecodable photos, bad boxes, empty categories.

    Prints a per-category summary and the first problems found, each naming its
    file; --json prints the whole report for machines.
    """
    from ..data.check import check_dataset

    report = check_dataset(dataset.value, root, split=split.value, annotations=annotations, decode=decode,
                           workers=workers)
    if as_json:
        typer.echo(json.dumps(report, indent=2, sort_keys=True, default=str))
    else:
        _print_check(report)
    if strict and not report["ok"]:
        raise typer.Exit(1)


def _print_check(report: dict) -> None:
    out = console()
    cats = report["categories"]
    columns = list(next(iter(cats.values())).keys()) if cats else []
    table = Table(title=f"{report['dataset']} in {report['root']}")
    table.add_column("category")
    for col in columns:
        table.add_column(col.replace("_", " "), justify="right")
    for name, row in cats.items():
        table.add_row(name, *(str(row[c]) for c in columns))
    if report.get("totals"):
        table.add_row("[bold]all[/]", *(f"[bold]{report['totals'].get(c, '')}[/]" for c in columns))
    out.print(table)
    p = report["photos"]
    out.print(f"photos checked: {p['checked']}, missing: {p['missing']}, undecodable: {p['undecodable']}")
    if report["ok"]:
        out.print("[green]no problem found[/]")
    else:
        out.print(f"[red]{report['n_problems']} problem(s)[/]; the first ones:")
        for line in report["problems"]:
            out.print(f"  {line}", markup=False, highlight=False)
