"""`detret demo` and `detret report`."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from .app import app, rerun_command, state


@app.command("demo")
def demo_cmd(
    ctx: typer.Context,
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o", file_okay=False,
                             help="Folder for the dataset, the run and the report."),
    quick: bool = typer.Option(False, "--quick", help="A much smaller run (a minute or two) that exercises "
                                                      "every stage; its numbers mean little."),
    seed: int = typer.Option(0, help="Seed of the synthetic dataset."),
) -> None:
    """The paper in miniature: generate the embedded dataset, train the detector, detect, train the four
    retrieval models (triplet / AP loss x whole / cropped shop photos), embed, build the four ensembles,
    search, evaluate (Table 1) and write the HTML report.

    Finished stages are reused, so an interrupted demo continues where it stopped.
    Global --set overrides apply (e.g. --set device=cuda). Writes OUT/demo.yaml (rerun any
    stage with `detret --config OUT/demo.yaml ...`), OUT/runs/ (every stage),
    OUT/runs/eval/table.md, OUT/runs/report/index.html and OUT/demo/{timings.json,reading.md}.
    """
    from ..demo.run import run_demo
    from ..evaluate.reading import reading_markdown
    from ..evaluate.report import table_rows

    console = Console() if Console().is_terminal else Console(width=200)
    st = state(ctx)
    if st.config_path is not None:
        raise typer.BadParameter("the demo writes its own pipeline config (OUT/demo.yaml); use --set to override keys")
    result = run_demo(out, quick=quick, seed=seed, overrides=st.overrides, console=console)
    results = result["results"]
    first = next(iter(results.values()))
    table = Table(title="Table 1 on the synthetic Exact Street2Shop test pairs (%), within category")
    table.add_column("category")
    table.add_column("metric")
    for run in results:
        table.add_column(run, justify="right")
    for row in table_rows(results, first.get("ks", [1, 20])):
        table.add_row(*row, style="bold" if row[0].startswith("mean") else None)
    console.print(table)
    console.print(reading_markdown(result["findings"]))
    total = sum(s.get("seconds_when_run", s["seconds"]) for s in result["steps"])
    console.print(f"Steps: {total / 60:.1f} min of compute in all ({result['seconds'] / 60:.1f} min this time); "
                  f"per step: {out / 'demo' / 'timings.json'}")
    console.print(f"Table: {result['run_dir'] / 'eval' / 'table.md'}")
    console.print(f"Report: {result['run_dir'] / 'report' / 'index.html'}")


@app.command("report")
def report_cmd(
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

    pcfg = state(ctx).pipeline_config()
    timings = Path(pcfg.run_dir).parent / "demo" / "timings.json"
    result = run_report(pcfg, names, examples=examples, k_show=k_show, seed=seed,
                        timings=timings if timings.is_file() else None, force=force, command=rerun_command(ctx))
    typer.echo(f"report: {result['html']}")
