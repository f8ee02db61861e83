"""What a command prints besides its own output: detret's log lines, and nothing from libraries.

Without ``--debug`` the libraries stay quiet: their log records below WARNING (FAISS's
loader reports six INFO lines on import; torch's own ``W...`` lines), their Python warnings (the FutureWarnings
torch and Detectron2 raise on import) and what they print (pycocotools' progress, Detectron2's
console log; its ``log.txt`` is still written) are not shown, in this process and in the
worker processes it spawns (through ``PYTHONWARNINGS``, ``TORCH_LOGS`` and
``DETRET_LIBRARY_LOGS``, which they inherit; a value the user set is kept). detret's own
log records (INFO, DEBUG with ``--verbose``) and warnings are shown. ``--debug`` shows
everything, as the libraries emit it.
"""
from __future__ import annotations

import logging
import os
import warnings

from ..utils.logs import LIBRARY_LOGS_ENV

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Categories libraries raise about themselves; a spawned worker inherits this filter.
_LIBRARY_WARNINGS = "ignore::FutureWarning,ignore::DeprecationWarning,ignore::UserWarning"


def configure_output(*, verbose: bool, debug: bool) -> None:
    """Set up logging and warnings for one command (see the module docstring)."""
    detret_level = logging.DEBUG if verbose or debug else logging.INFO
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format=LOG_FORMAT, datefmt="%H:%M:%S")
    logging.getLogger("detret").setLevel(detret_level)
    os.environ[LIBRARY_LOGS_ENV] = "1" if debug else "0"
    if debug:
        warnings.resetwarnings()
        warnings.simplefilter("default")
        return
    os.environ.setdefault("PYTHONWARNINGS", _LIBRARY_WARNINGS)
    os.environ.setdefault("TORCH_LOGS", "-all")  # torch resets its loggers on import; this is how to lower them
    warnings.filterwarnings("ignore")
    warnings.filterwarnings("default", module=r"detret(\.|$)")
