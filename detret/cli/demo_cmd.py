"""`detret demo`."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ..runs.layout import RunLayout
from .context import console, state


def demo(
    ctx: typer.Context,
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o", file_okay=False,
                             help="Folder for the dataset, the run and the report."),
    quick: bool = typer.Option(False, "--quick", help="A much smaller run (a minute or two) that exercises "
                                                      "every stage; its numbers mean little."),
    seed: int = typer.Option(0, help="Seed of the synthetic dataset."),
    recipe: str = typer.Option("paper", "--recipe", metavar="NAME|FILE",
                               help="The models to train after the detector: paper (Table 1's models and "
                                    "ensembles), seeds (one configuration per seed system, on the paper demo's "
                                    "detector and crops), or a recipe file of yours (docs: Extending detret)."),
) -> None:
    """The paper in miniature: generate the embedded dataset, train the detector, detect, train the four
    retrieval models (triplet / AP loss x whole / cropped shop photos), embed, build the four ensembles,
    search, evaluate (Table 1) and write the HTML report.

    Finished stages are reused, so an interrupted demo continues where it stopped.
    Global --set overrides apply (e.g. --set device=cuda). Writes OUT/demo.yaml (rerun any
    stage with `detret --config OUT/demo.yaml ...`), OUT/runs/ (every stage),
    OUT/runs/eval/table.md, OUT/runs/report/index.html and OUT/demo/{timings.json,reading.md}.

    --recipe seeds (or a recipe file) trains, instead of Table 1's models, the recipe's models on the
    same detector and crops (reusing the paper demo's), and writes OUT/runs/eval-<recipe>/table.md
    and OUT/demo/{timings-<recipe>.json,reading-<recipe>.md}.
    """
    from ..demo.recipe_steps import eval_folder, is_main
    from ..demo.run import run_demo
    from ..evaluate.tables import means_rows

    printer = console()
    st = state(ctx)
    if st.config_path is not None:
        raise typer.BadParameter("the demo writes its own pipeline config (OUT/demo.yaml); use --set to override keys")
    result = run_demo(out, quick=quick, seed=seed, overrides=st.overrides, console=printer, recipe=recipe)
    results, main = result["results"], is_main(result["recipe"])
    first = next(iter(results.values()))
    title = "Table 1" if main else result["recipe"].title or result["recipe"].name
    table = Table(title=f"{title} on the synthetic Exact Street2Shop test pairs: mean over categories (%) "
                        "[95% interval]; per category in the table file below")
    header, rows = means_rows(results, first.get("ks", [1, 20]))
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    printer.print(table)
    printer.print(result["reading"])
    total = sum(s.get("seconds_when_run", s["seconds"]) for s in result["steps"])
    printer.print(f"Steps: {total / 60:.1f} min of compute in all ({result['seconds'] / 60:.1f} min this time); "
                  f"per step: {result['timings']}")
    layout = RunLayout(result["run_dir"])
    if not main:
        printer.print(f"Table: {eval_folder(layout, result['recipe']) / 'table.md'}")
    else:
        printer.print(f"Table: {layout.eval / 'table.md'} (Tables 2 and 3: {layout.eval / 'table2.md'})")
        printer.print(f"DeepFashion2, both ways and by annotation level: {layout.eval_df2 / 'table.md'}")
        printer.print(f"Report: {layout.report / 'index.html'}")
    printer.print("Serve the best run as your own catalogue (then open http://127.0.0.1:8000/):")
    for command in result["serve_commands"]:
        printer.print(f"  {command}", soft_wrap=True)
