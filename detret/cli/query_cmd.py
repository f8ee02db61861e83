"""`detret query`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..config.choices import Engine, Precision
from .engine_options import detector_precision_option, engine_choice, engine_option, precision_option
from .context import console, state


def _box(text: Optional[str]):
    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 4:
        raise typer.BadParameter(f"--box must be x0,y0,x1,y1 in pixels, got {text!r}")
    return tuple(values)


def query(
    ctx: typer.Context,
    photo: Path = typer.Argument(..., help="A street photo (any format Pillow reads)."),
    category: Optional[str] = typer.Option(None, "--category", help="Retrieval category of the garment, e.g. "
                                                                    "dresses (required for a run; with --catalogue, "
                                                                    "none: every garment found)."),
    box: Optional[str] = typer.Option(None, "--box", help="x0,y0,x1,y1 pixels of the garment; default: the run's "
                                                          "detector and crop policy."),
    run: Optional[str] = typer.Option(None, "--run", help="Descriptor run to search (default: the best evaluated)."),
    k: int = typer.Option(10, min=1, help="Results to show."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", file_okay=False,
                                       help="Also write query.json and query.png (the photo, its crop, the results) "
                                            "into this folder."),
    catalogue: Optional[Path] = typer.Option(None, "--catalogue", file_okay=False,
                                             help="Search this catalogue (detret catalogue create) instead of a run."),
    engine: Optional[Engine] = engine_option(),
    precision: Precision = precision_option(),
    detector_precision: Optional[Precision] = detector_precision_option(),
) -> None:
    """Search one photo against a built run: crop (given box or detector), embed, search its category.

    With --catalogue, search a catalogue as `detret serve` does (without a category: shop the look)."""
    from ..query.outputs import write_query_outputs
    from ..query.run import run_query

    choice = engine_choice(engine, precision, detector_precision)
    if catalogue is not None:
        _query_catalogue(catalogue, photo, category, _box(box), k, choice)
        return
    if category is None:
        raise typer.BadParameter("--category is required to search a run", param_hint="--category")

    pcfg = state(ctx).pipeline_config()
    result = run_query(pcfg, photo, category, box=_box(box), run=run, k=k, engine=choice)
    x0, y0, x1, y1 = result.crop.box_xyxy
    table = Table(title=f"{photo} · {category} · run {result.run} · crop {result.crop.rule} "
                        f"[{x0:.0f}, {y0:.0f}, {x1:.0f}, {y1:.0f}]")
    for col in ("rank", "score", "shop photo", "product", "path"):
        table.add_column(col, justify="left" if col == "path" else "right")
    for rank, photo_id, product_id, score, path, _ in result.results:
        table.add_row(str(rank), f"{score:.4f}", str(photo_id), str(product_id), str(path))
    printer = console()
    printer.print(table)
    if out is not None:
        write_query_outputs(out, result)
        printer.print(f"written: {out / 'query.json'}, {out / 'query.png'}")


def _query_catalogue(catalogue: Path, photo: Path, category: Optional[str], box, k: int, choice) -> None:
    """One photo against a catalogue, through the service's engine (no server)."""
    from ..data.images import read_rgb
    from ..errors import InputError
    from ..serve.engine import Job, SearchEngine

    engine = SearchEngine(catalogue, engine=choice)
    if category is not None and category not in engine.categories:
        raise InputError(f"--category {category!r} is not a category of {catalogue}; known: "
                         f"{', '.join(engine.categories)}")
    if box is not None and category is None:
        raise InputError("--box needs --category (the category of the boxed garment)")
    if category is None and not engine.has_detector:
        raise InputError(f"{catalogue}: has no detector (created with --no-detector): give --category")
    result = engine.run([Job(read_rgb(photo), category, box, k)])[0]
    printer = console()
    if not result["garments"]:
        printer.print(f"{photo}: no garment found (objectness > 0.5); give --category (and --box)")
    for g in result["garments"]:
        printer.print(f"{photo} · {g['category']} · crop {g['rule']} {g['box_xyxy']}", soft_wrap=True)
        table = Table()
        for col in ("rank", "score", "product", "photo_id", "title"):
            table.add_column(col, justify="left" if col == "title" else "right")
        for r in g["results"]:
            table.add_row(str(r["rank"]), f"{r['score']:.4f}", r["product"], str(r["photo_id"]), r["title"] or "")
        printer.print(table)
