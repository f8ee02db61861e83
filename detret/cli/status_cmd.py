"""`detret status`: every stage of the run, done, stale, running or missing."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List

import typer
from rich.console import Console
from rich.table import Table

from ..runs.layout import RunLayout
from ..runs.stage import StageStatus
from ..runs.status import run_status
from .context import state


def _model_in_use(layout: RunLayout, row: StageStatus) -> bool:
    """A stale trained model whose files are intact: later stages keep using it (``require_built``)."""
    return row.state == "stale" and row.outputs_intact and layout.holds_model(Path(row.stage_dir))

_STYLE = {"done": "green", "stale": "red", "running": "yellow", "missing": "dim"}


def status(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Show each stage of the run directory (and the datasets it reads): done, stale, running or missing.

    A stage is stale when one of its inputs or outputs no longer matches its
    manifest; the table names what changed and the command that rebuilds it. A trained
    model (detector, retrieval-<model>) whose training data changed but whose files are
    intact is stale too, and said to be still used as it is by detect and embed.
    Exits with 1 when any stage is stale.
    """
    cfg = state(ctx).pipeline_config()
    rows: List[StageStatus] = run_status(cfg)
    layout = RunLayout(cfg.run_dir)
    if as_json:
        typer.echo(json.dumps([{"stage": r.stage, "dir": str(r.stage_dir), "state": r.state,
                                 "reasons": r.reasons, "command": r.command,
                                 "model_in_use": _model_in_use(layout, r)} for r in rows], indent=2))
    else:
        table = Table(title=f"Run {Path(cfg.run_dir)}")
        for col in ("stage", "state", "folder", "details"):
            table.add_column(col)
        for r in rows:
            details = "; ".join(r.reasons)
            if _model_in_use(layout, r):
                details += "\nthe model was trained on other data; detect and embed still use it as it is"
            if r.state in ("stale", "running") and r.command:
                details += f"\nrerun: {r.command}"
            try:
                folder = str(Path(r.stage_dir).resolve().relative_to(Path(cfg.run_dir).resolve()))
            except ValueError:  # outside the run directory (a generated dataset)
                folder = str(r.stage_dir)
            table.add_row(r.stage, f"[{_STYLE[r.state]}]{r.state}[/]", folder, details)
        Console().print(table)
    if any(r.state == "stale" for r in rows):
        raise typer.Exit(1)
