"""`detret`: the command line. It parses, loads the pipeline config, and calls the stages.

Global options come before the subcommand::

    detret --config my.yaml --set device=cuda --set data.street2shop.root=/data/s2s status

The commands live one module each beside this one (``detect_cmd.py`` is ``detret detect``)
and know nothing of this module: it imports them and registers them, in the pipeline's
order, which is the order of ``detret --help``. Their heavy imports (torch, Detectron2)
happen inside the commands, so ``--help`` stays fast.

Errors that users cause (a bad config, a missing file, a stale artifact: every
:class:`~detret.errors.DetretError`) are printed as one line naming the file and the
problem, with exit code 2; run with ``--debug`` to see the traceback. Any other
exception is a bug and shows its traceback.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import DetretError
from . import (
    blocks_cmd,
    catalogue_cmd,
    config_cmd,
    data_cmd,
    demo_cmd,
    detect_cmd,
    embed_cmd,
    eval_cmd,
    export_cmd,
    query_cmd,
    report_cmd,
    search_cmd,
    serve_cmd,
    status_cmd,
    train_detector_cmd,
    train_retrieval_cmd,
)
from .context import CliState
from .output import configure_output

app = typer.Typer(
    name="detret",
    help="Detect-then-retrieve street-to-shop fashion retrieval (Kucer & Murray, CVPR-W 2019).\n\n"
    "Each subcommand runs one stage over the run directory named by the pipeline config "
    "(--config, $DETRET_CONFIG or ./detret.yaml) and hands its artifacts to the next.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Errors a user can act on: reported in one line, never as a traceback.
USER_ERRORS = (DetretError,)


@app.callback()
def root(
    ctx: typer.Context,
    config: Optional[Path] = typer.Option(
        None, "--config", "-c", help="Pipeline config YAML (default: $DETRET_CONFIG, then ./detret.yaml).",
        dir_okay=False,
    ),
    set_: List[str] = typer.Option(
        [], "--set", "-s", metavar="KEY=VALUE",
        help="Override a pipeline config key, e.g. --set device=cuda --set run_dir=runs/x (repeatable).",
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages of detret."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of errors, and the libraries' log lines and "
                                                      "warnings."),
) -> None:
    configure_output(verbose=verbose, debug=debug)
    ctx.obj = CliState(config_path=config, overrides=list(set_))


# The pipeline's order, grouped by stage in `detret --help`.
DATA, PAPER, CATALOGUE, RUNS = "Data", "The paper's pipeline", "Your catalogue and the service", "Runs and settings"
app.add_typer(data_cmd.data_app, name="data", rich_help_panel=DATA)
app.command("train-detector", rich_help_panel=PAPER)(train_detector_cmd.train_detector)
app.command("detect", rich_help_panel=PAPER)(detect_cmd.detect)
app.command("train-retrieval", rich_help_panel=PAPER)(train_retrieval_cmd.train_retrieval)
app.command("embed", rich_help_panel=PAPER)(embed_cmd.embed)
app.command("combine", rich_help_panel=PAPER)(embed_cmd.combine)
app.command("search", rich_help_panel=PAPER)(search_cmd.search)
app.command("eval", rich_help_panel=PAPER)(eval_cmd.evaluate)
app.command("embed-df2", rich_help_panel=PAPER)(embed_cmd.embed_df2)
app.command("eval-df2", rich_help_panel=PAPER)(eval_cmd.evaluate_df2)
app.command("query", rich_help_panel=PAPER)(query_cmd.query)
app.command("export", rich_help_panel=PAPER)(export_cmd.export)
app.command("demo", rich_help_panel=PAPER)(demo_cmd.demo)
app.command("report", rich_help_panel=PAPER)(report_cmd.report)
app.add_typer(catalogue_cmd.catalogue_app, name="catalogue", rich_help_panel=CATALOGUE)
app.command("serve", rich_help_panel=CATALOGUE)(serve_cmd.serve)
app.command("status", rich_help_panel=RUNS)(status_cmd.status)
app.add_typer(config_cmd.config_app, name="config", rich_help_panel=RUNS)
app.command("blocks", rich_help_panel=RUNS)(blocks_cmd.blocks)


def main(argv: Optional[List[str]] = None) -> None:
    debug = "--debug" in (argv if argv is not None else sys.argv)
    try:
        app(args=argv, standalone_mode=True)
    except USER_ERRORS as exc:
        if debug:
            raise
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        typer.secho("(run with --debug to see where it was raised)", err=True)
        sys.exit(2)
