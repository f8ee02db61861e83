"""`detret export`."""
from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer

from .context import state


class ExportFormat(StrEnum):
    ONNX = "onnx"
    TORCHSCRIPT = "torchscript"


def export(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="A trained retrieval run of the run directory (tri-crops, ...) or a "
                                          "model.pt file."),
    export_format: ExportFormat = typer.Option(ExportFormat.ONNX, "--format", help="onnx (onnxruntime, TensorRT, "
                                                                                   "...) or torchscript."),
    out: Path = typer.Option(..., "--out", "-o", file_okay=False, help="Folder to write the network file(s) and "
                                                                        "meta.json into."),
) -> None:
    """Export a retrieval network (each stream of a two-stream one) with a meta.json of its inputs and outputs."""
    from ..retrieval.export import export_network
    from ..runs.layout import RunLayout

    pcfg = state(ctx).pipeline_config()
    checkpoint = RunLayout(pcfg.run_dir).retrieval_checkpoint(model)
    record = export_network(checkpoint, out, export_format.value)
    sizes = ", ".join(record["input"]["dynamic_axes"])
    for domain, name in record["files"].items():
        typer.echo(f"{out / name}: {domain} photos [N, 3, H, W] -> descriptors [N, {record['output']['dim']}] "
                   f"(dynamic: {sizes})")
    typer.echo(f"{out / 'meta.json'}: preprocessing and the checkpoint's meta")
