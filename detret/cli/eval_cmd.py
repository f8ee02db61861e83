"""`detret eval`."""
from __future__ import annotations

from typing import Dict, List, Optional

import typer
from rich.table import Table

from ..config.choices import RetrievalDataset
from .context import comma_floats, console, rerun_command, state


def evaluate(
    ctx: typer.Context,
    names: Optional[List[str]] = typer.Argument(None, help="Descriptor runs to compare (default: every embed-*)."),
    per_category: bool = typer.Option(False, "--per-category", help="Print every category, not only the means."),
    ks: Optional[str] = typer.Option(None, help="Comma-separated K (default: 1,20; DeepFashion2: 1,5,10,20)."),
    dataset: RetrievalDataset = typer.Option(RetrievalDataset.STREET2SHOP,
                                             help="street2shop (Table 1) or deepfashion2 (Recall@K both ways)."),
    force: bool = typer.Option(False, "--force", help="Recompute even if the metrics exist."),
    bootstrap: int = typer.Option(1000, "--bootstrap", min=0, help="Resamples of the 95% intervals over queries "
                                                                  "(within each category, seeded by the config's "
                                                                  "seed); 0: none."),
    out_name: str = typer.Option("eval", "--out-name", help="Folder under the run directory to write into (another "
                                                            "comparison beside Table 1's, e.g. eval-seeds)."),
) -> None:
    """mAP, Acc@1 and Acc@20 per category and averaged, as the paper's Table 1, one column per run.

    Writes <run_dir>/eval/: metrics.json, table.md, table.csv, acc_at_k.png. With
    --dataset deepfashion2: Recall@K consumer-to-shop and shop-to-consumer in <run_dir>/eval-df2/.
    """
    pcfg = state(ctx).pipeline_config()
    if dataset == RetrievalDataset.DEEPFASHION2:
        from ..evaluate.deepfashion2_stage import run_eval_df2

        if not names:
            raise typer.BadParameter("name the DeepFashion2 descriptor runs to evaluate (embed-df2-<name>)")
        result = run_eval_df2(pcfg, names, ks=[int(k) for k in comma_floats(ks or "1,5,10,20", "--ks")], force=force,
                              command=rerun_command(ctx))
        typer.echo(result["table"])
        return
    from ..evaluate.stage import run_eval

    ks_list = [int(k) for k in comma_floats(ks or "1,20", "--ks")]
    if not out_name or "/" in out_name or out_name.startswith("."):
        raise typer.BadParameter(f"--out-name must be a folder name, got {out_name!r}", param_hint="--out-name")
    results = run_eval(pcfg, names or [], ks=ks_list, out_name=out_name, bootstrap=bootstrap, force=force,
                       command=rerun_command(ctx))
    printer = console()
    printer.print(_table(results, ks_list, per_category))
    first = next(iter(results.values()))
    missing = sum(r["queries_without_positive"] for r in first["per_category"].values())
    if missing:
        printer.print(f"{missing} queries have no positive in the gallery and are excluded")


def _table(results: Dict[str, Dict], ks: List[int], per_category: bool) -> Table:
    from ..evaluate.tables import table_rows

    table = Table(title="Exact Street2Shop retrieval (%), within category")
    table.add_column("category")
    table.add_column("metric")
    for run in results:
        table.add_column(run, justify="right")
    for row in table_rows(results, ks):
        if per_category or row[0].startswith("mean"):
            table.add_row(*row)
    return table
