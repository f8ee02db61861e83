"""`detret eval`."""
from __future__ import annotations

from typing import Dict, List, Optional

import typer
from rich.table import Table

from ..config.choices import Protocol
from .context import comma_floats, console, rerun_command, state


def evaluate(
    ctx: typer.Context,
    names: Optional[List[str]] = typer.Argument(None, help="Descriptor runs to compare (default: every embed-*)."),
    per_category: bool = typer.Option(False, "--per-category", help="Print every category, not only the means."),
    ks: Optional[str] = typer.Option(None, help="Comma-separated K (default: 1,20; --protocol all: 1,5,10,20)."),
    force: bool = typer.Option(False, "--force", help="Recompute even if the metrics exist."),
    bootstrap: int = typer.Option(1000, "--bootstrap", min=0, help="Resamples of the 95% intervals over queries "
                                                                  "(within each category, seeded by the config's "
                                                                  "seed); 0: none."),
    out_name: str = typer.Option("", "--out-name", help="Folder under the run directory to write into (default: "
                                                        "eval, eval-all for --protocol all; e.g. eval-seeds)."),
    protocol: Protocol = typer.Option(Protocol.CATEGORY, help="category: a query against its category's shop photos "
                                      "(Kiapour et al., the paper's); all: against every shop photo (Morelli et al.'s "
                                      "Recall@K; default --ks 1,5,10,20)."),
) -> None:
    """mAP, Acc@1 and Acc@20 per category and averaged, as the paper's Table 1, one column per run.

    A run is a descriptor run (embed-<name>) or a re-ranked one (<name>+aqe, from detret search <name>
    --rerank aqe). Writes <run_dir>/eval/: metrics.json, table.md, table.csv, acc_at_k.png,
    per_query.json; each value with its 95% bootstrap interval.
    """
    from ..evaluate.stage import run_eval

    pcfg = state(ctx).pipeline_config()
    default_ks = "1,20" if protocol == Protocol.CATEGORY else "1,5,10,20"
    ks_list = [int(k) for k in comma_floats(ks or default_ks, "--ks")]
    if "/" in out_name or out_name.startswith("."):
        raise typer.BadParameter(f"--out-name must be a folder name, got {out_name!r}", param_hint="--out-name")
    results = run_eval(pcfg, names or [], ks=ks_list, out_name=out_name, bootstrap=bootstrap, protocol=protocol.value,
                       force=force, command=rerun_command(ctx))
    printer = console()
    printer.print(_table(results, ks_list, per_category, protocol))
    first = next(iter(results.values()))
    missing = sum(r["queries_without_positive"] for r in first["per_category"].values())
    if missing:
        printer.print(f"{missing} queries have no positive in the gallery and are excluded")


def evaluate_df2(
    ctx: typer.Context,
    names: List[str] = typer.Argument(..., help="DeepFashion2 descriptor runs (embed-df2-<name>)."),
    ks: str = typer.Option("1,5,10,20", help="Comma-separated K."),
    bootstrap: int = typer.Option(1000, "--bootstrap", min=0, help="Resamples of the 95% intervals; 0: none."),
    force: bool = typer.Option(False, "--force", help="Recompute even if the metrics exist."),
) -> None:
    """Recall@K consumer-to-shop and shop-to-consumer, overall and per annotation level (Ibrahim et al.'s
    Tables 2 and 3), each with its 95% interval. Writes <run_dir>/eval-df2/."""
    from ..evaluate.deepfashion2_stage import TABLE_FILE, run_eval_df2
    from ..runs.layout import RunLayout

    pcfg = state(ctx).pipeline_config()
    run_eval_df2(pcfg, names, ks=[int(k) for k in comma_floats(ks, "--ks")], bootstrap=bootstrap, force=force,
                 command=rerun_command(ctx))
    typer.echo((RunLayout(pcfg.run_dir).eval_df2 / TABLE_FILE).read_text())


def _table(results: Dict[str, Dict], ks: List[int], per_category: bool, protocol: Protocol) -> Table:
    """Means only: one row per run (narrow); --per-category: Table 1's layout, one column per run."""
    from ..evaluate.tables import means_rows, table_rows

    where = "within category" if protocol == Protocol.CATEGORY else "over every shop photo"
    if not per_category:
        table = Table(title=f"Exact Street2Shop retrieval, {where}: mean over categories (%) [95% interval]")
        header, rows = means_rows(results, ks)
        for i, name in enumerate(header):
            table.add_column(name, justify="left" if i == 0 else "right")
        for row in rows:
            table.add_row(*row)
        return table
    table = Table(title=f"Exact Street2Shop retrieval (%), {where}; [95% interval]")
    table.add_column("category")
    table.add_column("metric")
    for run in results:
        table.add_column(run, justify="right")
    for row in table_rows(results, ks):
        table.add_row(*row, style="bold" if row[0].startswith("mean") else None)
    return table
