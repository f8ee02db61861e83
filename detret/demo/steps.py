"""One step of the demo: a stage function and the CLI command it stands for."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from omegaconf import DictConfig


@dataclass
class Step:
    title: str                         # what it does, for the progress display
    command: str                       # the equivalent CLI command (also recorded in the manifest)
    stage_dir: Optional[Path]          # where its manifest lives (None: always runs; cheap)
    run: Callable[[DictConfig, str, bool], object]   # (pipeline config, command, force)
