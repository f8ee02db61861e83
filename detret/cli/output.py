"""What a command prints besides its own output: detret's log lines, and nothing from libraries.

Without ``--debug`` the libraries stay quiet: their log records below WARNING (FAISS's
loader reports six INFO lines on import) and their Python warnings (the FutureWarnings
torch and Detectron2 raise on import) are not shown, in this process and in the worker
processes it spawns (through ``PYTHONWARNINGS``, which they inherit). detret's own
log records (INFO, DEBUG with ``--verbose``) and warnings are shown. ``--debug`` shows
everything, as the libraries emit it.
"""
from __future__ import annotations

import logging
import os
import warnings

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Categories libraries raise about themselves; a spawned worker inherits this filter.
_LIBRARY_WARNINGS = "ignore::FutureWarning,ignore::DeprecationWarning,ignore::UserWarning"


def configure_output(*, verbose: bool, debug: bool) -> None:
    """Set up logging and warnings for one command (see the module docstring)."""
    detret_level = logging.DEBUG if verbose or debug else logging.INFO
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format=LOG_FORMAT, datefmt="%H:%M:%S",
                        force=True)
    logging.getLogger("detret").setLevel(detret_level)
    if debug:
        warnings.resetwarnings()
        warnings.simplefilter("default")
        return
    os.environ.setdefault("PYTHONWARNINGS", _LIBRARY_WARNINGS)
    warnings.filterwarnings("ignore")
    warnings.filterwarnings("default", module=r"detret(\.|$)")
