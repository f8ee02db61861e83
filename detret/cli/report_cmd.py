"""`detret report`."""
from __future__ import annotations

from typing import List, Optional

import typer

from .context import rerun_command, state


def report(
    ctx: typer.Context,
    names: Optional[List[str]] = typer.Argument(None, help="Evaluated runs to show (default: all in eval/)."),
    examples: int = typer.Option(8, min=1, help="Queries shown in the retrieval figure."),
    k_show: int = typer.Option(7, min=1, help="Results shown per query."),
    seed: int = typer.Option(0, help="Seed choosing the example photos."),
    force: bool = typer.Option(False, "--force", help="Rewrite even if the report is up to date."),
) -> None:
    """The visual report of a run: <run_dir>/report/index.html (self-contained) and figures/*.png.

    Table 1 and its reading, detections with the chosen crops (Figure 4), retrieval
    examples with matches in green and mismatches in red (Figure 5), per-category bars,
    Acc@K curves, the crop policy's fallback rates and the run's manifest. Needs `detret eval`.
    """
    from ..report.stage import run_report
    from ..runs.layout import RunLayout

    pcfg = state(ctx).pipeline_config()
    timings = RunLayout(pcfg.run_dir).demo_timings
    result = run_report(pcfg, names, examples=examples, k_show=k_show, seed=seed,
                        timings=timings if timings.is_file() else None, force=force, command=rerun_command(ctx))
    typer.echo(f"report: {result['html']}")
