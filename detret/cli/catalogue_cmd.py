"""`detret catalogue create | add | remove | info | compact | reindex | check | repair`: a retailer's own searchable
catalogue."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from ..config.choices import Engine, Precision
from .engine_options import detector_precision_option, engine_choice, engine_option, precision_option
from .context import console, state
from .parallel_options import num_gpus_option

catalogue_app = typer.Typer(help="Your own catalogue: products and photos bound to a run's models, changed by atomic "
                                 "adds and removals, searched by `detret serve`.", no_args_is_help=True)


VECTORS_HELP = ("Where the vectors live: faiss (segment files in the catalogue folder), milvus:PATH.db (Milvus "
                "Lite embedded; a relative path is inside the catalogue folder) or milvus:http://HOST:19530 (a Milvus "
                "server or cluster; token in $DETRET_MILVUS_TOKEN).")


def _print_json(obj) -> None:
    console().print_json(json.dumps(obj))


@catalogue_app.command("create")
def create(
    ctx: typer.Context,
    catalogue: Path = typer.Argument(..., file_okay=False, help="Folder of the new catalogue (must not exist)."),
    run: Optional[str] = typer.Option(None, "--run", help="Descriptor run of the pipeline's run directory whose "
                                                          "models the catalogue uses (a single run or an ensemble, "
                                                          "e.g. Crops)."),
    descriptor: Optional[str] = typer.Option(None, "--descriptor", help="Or a foundation model, without training: "
                                             "open_clip:NAME, timm:NAME or hf:REPO_OR_FOLDER (see `detret embed "
                                             "--descriptor`)."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="The foundation model's weights (a folder in its "
                                           "library's format, or a file); default: the Hugging Face cache."),
    no_detector: bool = typer.Option(False, "--no-detector", help="With --descriptor: bind no detector (a photo is "
                                     "embedded at its given box, else whole; searches must name their category). "
                                     "Default: the pipeline's detector crops each photo, as the paper."),
    crop: str = typer.Option("box", "--crop", help="With --descriptor: box, or mask (the detection's mask cuts the "
                             "garment out first; a detector with MODEL.MASK_ON True)."),
    mask_fill: str = typer.Option("white", "--mask-fill", help="With --crop mask: white or mean."),
    index: str = typer.Option("Flat", "--index", help="Flat (exact, float32), SQfp16 (exact, float16), auto (exact "
                                                      "while a category is small, then IVF-SQ8) or a FAISS factory "
                                                      "such as IVF1024,SQ8, IVF1024,PQ256, HNSW32: trained per "
                                                      "category once it holds enough photos. With --vectors milvus: "
                                                      "Flat, auto (FLAT, then HNSW), HNSW, IVF_FLAT, IVF_SQ8, IVF_PQ, "
                                                      "DISKANN."),
    import_gallery: bool = typer.Option(False, "--import-gallery", help="Start with the run's own gallery and its "
                                                                        "descriptors (nothing recomputed)."),
    vectors: str = typer.Option("faiss", "--vectors", help=VECTORS_HELP),
) -> None:
    """Create a catalogue bound to a run's models (retrieval checkpoint(s), detector and crop policy) or to a
    foundation model used without training (--descriptor)."""
    from ..catalogue.create import FoundationChoice, create_catalogue
    from ..detect.masks import CropShape

    foundation = FoundationChoice(descriptor, weights, not no_detector, CropShape(crop, mask_fill)) if descriptor \
        else None
    _print_json(create_catalogue(state(ctx).pipeline_config(), catalogue, run, index_factory=index,
                                 import_gallery=import_gallery, vectors=vectors, foundation=foundation))


@catalogue_app.command("add")
def add(
    ctx: typer.Context,
    catalogue: Path = typer.Argument(..., file_okay=False, help="The catalogue folder."),
    products: Path = typer.Argument(..., help="CSV with columns photo,product,category[,box][,title][,url] (photo "
                                              "paths relative to the CSV), or a folder of photos: "
                                              "CATEGORY/PRODUCT/PHOTO, or flat (the detector names the category)."),
    device: str = typer.Option("cpu", "--device", help="Device for the detector and the descriptor model."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Photos per forward pass."),
    num_gpus: int = num_gpus_option(),
    duplicates: str = typer.Option("keep", "--duplicates", help="A photo that copies one the catalogue (or this "
                                   "add) holds for another product, exactly or re-encoded, resized or slightly "
                                   "cropped: keep (added, reported), skip (not added, reported) or off (not "
                                   "looked for)."),
    engine: Optional[Engine] = engine_option(),
    precision: Precision = precision_option(),
    detector_precision: Optional[Precision] = detector_precision_option(),
) -> None:
    """Add photos: each cropped (given box, or detector + the paper's policy), embedded, added in one change.

    A killed add changes nothing; rerun it: it computes only the batches it had not finished."""
    from ..catalogue.add import add_products
    from ..utils.device import DataParallel, resolve_device

    report = add_products(catalogue, products, device=resolve_device(device), batch_size=batch_size,
                          parallel=DataParallel(num_processes=num_gpus), duplicates=duplicates,
                          engine=engine_choice(engine, precision, detector_precision))
    _print_json(report.to_json())


@catalogue_app.command("engine")
def engine_cmd(
    catalogue: Path = typer.Argument(..., file_okay=False, help="The catalogue folder."),
    engine: Engine = typer.Option(Engine.ONNXRUNTIME, "--engine", help="onnxruntime."),
    precision: Precision = precision_option(),
    detector_precision: Optional[Precision] = detector_precision_option(),
    device: str = typer.Option("cpu", "--device", help="Device the exported models are checked on."),
) -> None:
    """Export the catalogue's models for the onnxruntime engine now (CATALOGUE/engines/ and its bundle manifest):
    `serve --engine onnxruntime` then starts without Detectron2. Needs Detectron2 and torch to export."""
    from ..catalogue.binding import BoundModels, read_card
    from ..utils.device import resolve_device

    choice = engine_choice(engine, precision, detector_precision)
    models = BoundModels(read_card(catalogue), catalogue, resolve_device(device), choice)
    path = models.export_engines()
    _print_json({"bundle": str(path), **json.loads(path.read_text())})


@catalogue_app.command("remove")
def remove(
    catalogue: Path = typer.Argument(..., file_okay=False, help="The catalogue folder."),
    product: Optional[str] = typer.Option(None, "--product", help="Remove every photo of this product."),
    photo: Optional[str] = typer.Option(None, "--photo", help="Remove this photo (a file: by content; else the path "
                                                              "as the product list wrote it)."),
) -> None:
    """Remove a product or a photo in one atomic change."""
    from ..catalogue.remove import remove_products

    _print_json(remove_products(catalogue, product=product, photo=photo))


@catalogue_app.command("info")
def info(
    catalogue: Path = typer.Argument(..., file_okay=False, help="The catalogue folder."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Counts per category, the model identity, the index type and the size on disk."""
    from ..catalogue.store import Catalogue

    cat = Catalogue.open(catalogue)
    try:
        summary = cat.summary()
    finally:
        cat.close()
    if as_json:
        _print_json(summary)
        return
    table = Table()
    for col in ("category", "products", "photos", "index", "segments", "tombstones", "recall@20"):
        table.add_column(col, justify="left" if col in ("category", "index") else "right")
    for category, counts in summary["categories"].items():
        ix = summary["index"]["categories"].get(category, {})
        recall = ix.get("recall_at_20")
        table.add_row(category, str(counts["products"]), str(counts["photos"]), ix.get("index", "-"),
                      str(ix.get("segments", 0)), str(ix.get("tombstones", 0)), "-" if recall is None else f"{recall:.3f}")
    printer = console()
    printer.print(f"{catalogue}: {summary['products']} products, {summary['photos']} photos")
    printer.print(table)
    model = summary["model"]
    printer.print(f"model {model['identity'][:16]} (run {model['run']}, dim {model['dim']}, crop policy "
                  f"{model['crop_policy']}), index {summary['index']['factory']}, "
                  f"{summary['size_on_disk_bytes'] / 2**20:.1f} MiB on disk, crops {summary['crop_rules']}")


@catalogue_app.command("compact")
def compact(
    catalogue: Path = typer.Argument(..., file_okay=False, help="The catalogue folder."),
    category: Optional[List[str]] = typer.Option(None, "--category", help="Only this category (repeatable)."),
    retrain: bool = typer.Option(False, "--retrain", help="Train the approximate indexes again (and measure their "
                                                          "recall), whatever the policy says."),
) -> None:
    """Merge each category's segments into one, drop removed photos' vectors, (re)train approximate indexes.

    Every add and removal runs the cheap part of this by itself (log merges; a category's training when it
    is due). A catalogue made by an earlier detret (schema 1) is converted first, keeping every descriptor."""
    from ..catalogue.compact import compact as compact_catalogue
    from ..catalogue.store import Catalogue

    with Catalogue.writing(catalogue, "detret catalogue compact") as cat:
        _print_json({"catalogue": str(catalogue), "merges": compact_catalogue(cat.applier, category, retrain)})


@catalogue_app.command("reindex")
def reindex(
    ctx: typer.Context,
    catalogue: Path = typer.Argument(..., file_okay=False, help="The catalogue folder."),
    run: Optional[str] = typer.Option(None, "--run", help="Descriptor run whose models the catalogue uses from now "
                                                          "on (every photo embedded again)."),
    vectors: Optional[str] = typer.Option(None, "--vectors", help="Move the vectors to this store, nothing "
                                                                  "recomputed (without --run). " + VECTORS_HELP),
    index: Optional[str] = typer.Option(None, "--index", help="Another index type (default: the current one)."),
    device: str = typer.Option("cpu", "--device", help="Device for the detector and the descriptor model."),
) -> None:
    """Bind the catalogue to another run's models (--run: every stored photo cropped and embedded again), or move
    its vectors to another store (--vectors: segment files <-> Milvus, nothing recomputed)."""
    from ..catalogue.create import reindex_catalogue
    from ..catalogue.move import move_vectors
    from ..errors import InputError
    from ..utils.device import resolve_device

    if (run is None) == (vectors is None):
        raise InputError("catalogue reindex: give --run NAME (new models) or --vectors SPEC (move the vectors), "
                         "one of them")
    if vectors is not None:
        _print_json(move_vectors(catalogue, vectors, index_factory=index))
        return
    _print_json(reindex_catalogue(state(ctx).pipeline_config(), catalogue, run, device=resolve_device(device),
                                  index_factory=index))


@catalogue_app.command("check")
def check(
    catalogue: Path = typer.Argument(..., file_okay=False, help="The catalogue folder."),
) -> None:
    """Compare the index files, the database's photos and the stored photos; say what disagrees (exit 1).

    Run it after a power cut or a full disk; `catalogue repair` fixes what it finds."""
    from ..catalogue.check import check_catalogue

    report = check_catalogue(catalogue)
    _print_json(report)
    if not report["ok"]:
        console().print("the catalogue needs `detret catalogue repair`")
        raise typer.Exit(1)


@catalogue_app.command("repair")
def repair(
    catalogue: Path = typer.Argument(..., file_okay=False, help="The catalogue folder."),
    device: str = typer.Option("cpu", "--device", help="Device for the descriptor model (missing vectors)."),
) -> None:
    """Make the catalogue agree with its database: missing vectors computed again from the stored photos,
    photos whose stored file is gone removed, stray vectors and files deleted."""
    from ..catalogue.check import repair_catalogue
    from ..utils.device import resolve_device

    _print_json(repair_catalogue(catalogue, device=resolve_device(device)))
