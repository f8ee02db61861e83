"""What every command reads from the command line's root: the pipeline config and its rerun line.

The root callback (``detret --config ... --set ...``) stores a :class:`CliState` on the
click context; a command asks :func:`state` for the merged pipeline config and
:func:`rerun_command` for the command line its manifest records ("what to rerun").
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import typer
from omegaconf import DictConfig
from rich.console import Console

from ..config.pipeline import find_config_file, load_pipeline_config


@dataclass
class CliState:
    config_path: Optional[Path] = None
    overrides: List[str] = field(default_factory=list)

    def pipeline_config(self, extra_overrides: Optional[List[str]] = None) -> DictConfig:
        """The merged pipeline config: defaults <- file <- --set <- stage options."""
        path = find_config_file(self.config_path)
        return load_pipeline_config(path, list(self.overrides) + list(extra_overrides or []))

    def has_config(self) -> bool:
        """Whether a pipeline config file is named or found (--config, $DETRET_CONFIG, ./detret.yaml)."""
        return find_config_file(self.config_path) is not None


def state(ctx: typer.Context) -> CliState:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, CliState) else CliState()


def console() -> Console:
    """A rich console; piped or logged output gets 200 columns instead of squeezed tables."""
    out = Console()
    return out if out.is_terminal else Console(width=200)


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
    for param in ctx.command.params:   # positional arguments first, in order (e.g. `combine A B`)
        if not isinstance(param, TyperOption) and ctx.params.get(param.name) not in (None, [], ()):
            value = ctx.params[param.name]
            parts += [str(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
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


def comma_floats(text: str, option: str) -> List[float]:
    """"1,0.707" -> [1.0, 0.707]; a typer.BadParameter naming `option` otherwise."""
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(f"{option}: expected comma-separated numbers, got {text!r}") from None
