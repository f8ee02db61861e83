"""`detret doctor`: what this machine has, and whether the configured pipeline can run on it."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .context import console, state

_STYLE = {"ok": "green", "info": "cyan", "warn": "yellow", "fail": "bold red"}


def doctor(
    ctx: typer.Context,
    descriptor: Optional[str] = typer.Option(None, "--descriptor", help="Also look for a foundation model's weights "
                                             "(open_clip:..., timm:..., hf:...) in --weights or the Hugging Face "
                                             "cache, without downloading."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="The foundation model's local weights."),
    catalogue: Optional[Path] = typer.Option(None, "--catalogue", file_okay=False,
                                             help="Also check a catalogue's model files against their hashes."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Devices (CUDA, MPS, CPU flags), packages, the Detectron2 route and what it rules out, FAISS GPUs, Milvus,
    weights of the configured models, Chromium. Downloads and loads nothing. Exit status 0 when the configured
    pipeline can run here, 1 when something it needs is missing (the rows marked fail)."""
    from ..doctor import exit_status, machine_checks, pipeline_checks

    pcfg = state(ctx).pipeline_config() if state(ctx).has_config() else None
    checks = machine_checks() + pipeline_checks(pcfg, descriptor, weights, catalogue)
    if as_json:
        typer.echo(json.dumps([c.to_json() for c in checks], indent=2))
    else:
        table = Table(show_lines=False)
        for col in ("area", "check", "state", "detail"):
            table.add_column(col, overflow="fold")
        for c in checks:
            detail = c.detail + (f"\n-> {c.fix}" if c.fix and c.state in ("warn", "fail") else "")
            table.add_row(c.area, c.name, f"[{_STYLE[c.state]}]{c.state}[/]", detail)
        console().print(table)
        if pcfg is None:
            console().print("no pipeline config found (--config, $DETRET_CONFIG or ./detret.yaml): machine only")
    raise typer.Exit(exit_status(checks))
