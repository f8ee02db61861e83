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
    doctor_cmd,
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


# The pipeline's order, grouped by stage in `detret --help`: (name, command or sub-application).
PANELS = {
    "Data": [("data", data_cmd.data_app)],
    "The paper's pipeline": [
        ("train-detector", train_detector_cmd.train_detector), ("detect", detect_cmd.detect),
        ("train-retrieval", train_retrieval_cmd.train_retrieval), ("embed", embed_cmd.embed),
        ("combine", embed_cmd.combine), ("whiten", embed_cmd.whiten), ("search", search_cmd.search), ("eval", eval_cmd.evaluate),
        ("embed-df2", embed_cmd.embed_df2), ("eval-df2", eval_cmd.evaluate_df2), ("query", query_cmd.query),
        ("export", export_cmd.export), ("demo", demo_cmd.demo), ("report", report_cmd.report)],
    "Your catalogue and the service": [("catalogue", catalogue_cmd.catalogue_app), ("serve", serve_cmd.serve)],
    "Runs and settings": [("doctor", doctor_cmd.doctor), ("status", status_cmd.status), ("config", config_cmd.config_app),
                          ("blocks", blocks_cmd.blocks)],
}
for panel, commands in PANELS.items():
    for name, command in commands:
        if isinstance(command, typer.Typer):
            app.add_typer(command, name=name, rich_help_panel=panel)
        else:
            app.command(name, rich_help_panel=panel)(command)


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
