"""Whether the libraries' own log lines and printed output are shown (``detret --debug``).

The command line decides (``detret.cli.output``) and records it in the environment, so that
worker processes started by Detectron2's ``launch`` decide the same way.
"""
from __future__ import annotations

import contextlib
import io
import os
from typing import Iterator

LIBRARY_LOGS_ENV = "DETRET_LIBRARY_LOGS"


def show_library_logs() -> bool:
    """True under ``detret --debug`` and when detret is used as a library (nothing to hide then)."""
    return os.environ.get(LIBRARY_LOGS_ENV, "1") == "1"


@contextlib.contextmanager
def library_prints_hidden() -> Iterator[None]:
    """Within the block, what libraries print to stdout (pycocotools' progress) is dropped, unless shown."""
    if show_library_logs():
        yield
        return
    with contextlib.redirect_stdout(io.StringIO()):
        yield
