"""`detret`: the command line. It parses, loads the pipeline config, and calls the stages.

Global options come before the subcommand::

    detret --config my.yaml --set device=cuda --set data.street2shop.root=/data/s2s status

Errors that users cause (a bad config, a missing file, a stale artifact) are
printed as one line naming the file and the problem, with exit code 2; run
with ``--debug`` to see the traceback.
"""
from __future__ import annotations

import logging
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import typer
from omegaconf import DictConfig

from ..config.pipeline import ConfigError, find_config_file, load_pipeline_config
from ..runs.stage import StaleArtifactError
from ..utils.disk import DiskSpaceError

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
USER_ERRORS = (ConfigError, StaleArtifactError, FileNotFoundError, ValueError, KeyError, DiskSpaceError)


@dataclass
class CliState:
    config_path: Optional[Path] = None
    overrides: List[str] = field(default_factory=list)
    debug: bool = False

    def pipeline_config(self, extra_overrides: Optional[List[str]] = None) -> DictConfig:
        """The merged pipeline config: defaults <- file <- --set <- stage options."""
        path = find_config_file(self.config_path)
        return load_pipeline_config(path, list(self.overrides) + list(extra_overrides or []))


def state(ctx: typer.Context) -> CliState:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, CliState) else CliState()


def rerun_command(ctx: typer.Context) -> str:
    """The command line that reproduces this invocation, for manifests ("what to rerun")."""
    from typer.core import TyperOption

    parts = ["detret"]
    root_params = ctx.find_root().params
    if root_params.get("config"):
        parts += ["--config", str(root_params["config"])]
    for item in root_params.get("set_") or []:
        parts += ["--set", item]
    names, node = [], ctx
    while node.parent is not None:  # subcommand names, without the root's (which is argv[0])
        names.append(node.info_name)
        node = node.parent
    parts += reversed(names)
    for param in ctx.command.params:
        if not isinstance(param, TyperOption) or param.name not in ctx.params:
            continue
        value = ctx.params[param.name]
        if value is None or value == param.default or value == []:
            continue
        if param.is_flag:
            if value:
                parts.append(param.opts[0])
            continue
        for v in value if isinstance(value, (list, tuple)) else [value]:
            parts += [param.opts[0], str(v)]
    return shlex.join(parts)


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
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of errors."),
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    ctx.obj = CliState(config_path=config, overrides=list(set_), debug=debug)


def _register_commands() -> None:
    # Each command module adds its commands to `app` when imported; their heavy
    # imports (torch, detectron2) happen inside the commands, so --help stays fast.
    # Order of import is the order of `detret --help`: the pipeline's order.
    from . import data_cmd  # noqa: F401
    from . import detect_cmd  # noqa: F401
    from . import retrieval_cmd  # noqa: F401
    from . import retrieve_cmd  # noqa: F401
    from . import query_cmd  # noqa: F401
    from . import demo_cmd  # noqa: F401
    from . import status_cmd  # noqa: F401
    from . import config_cmd  # noqa: F401


_register_commands()


def main(argv: Optional[List[str]] = None) -> None:
    debug = "--debug" in (argv if argv is not None else sys.argv)
    try:
        app(args=argv, standalone_mode=True)
    except USER_ERRORS as exc:
        if debug:
            raise
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
        typer.secho("(run with --debug to see where it was raised)", err=True)
        sys.exit(2)
