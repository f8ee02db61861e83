"""`detret config ...`: inspect the merged pipeline config."""
from __future__ import annotations

import typer

from ..config.pipeline import config_to_yaml, find_config_file, valid_keys
from .context import state

config_app = typer.Typer(help="Show the pipeline config and its valid keys.", no_args_is_help=True)


@config_app.command("show")
def show(ctx: typer.Context) -> None:
    """Print the merged config (defaults <- file <- --set), with absolute paths."""
    st = state(ctx)
    path = find_config_file(st.config_path)
    text = config_to_yaml(st.pipeline_config())
    typer.echo(f"# from: {path if path else 'built-in defaults'}")
    typer.echo(text, nl=False)


@config_app.command("keys")
def keys() -> None:
    """List every key that a config file or --set may set."""
    for key in valid_keys():
        typer.echo(key)
