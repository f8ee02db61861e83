"""Free-space checks made before a stage starts writing, not when the disk fills at 90%."""
from __future__ import annotations

import shutil
from pathlib import Path

from ..errors import DetretError

# Kept free beyond the artifact itself: logs, manifests, temporary copies of renames.
MARGIN_BYTES = 64 << 20


class DiskSpaceError(DetretError, OSError):
    """Not enough free space for an artifact; the message names the folder and the sizes."""


def _existing_parent(path: Path) -> Path:
    path = Path(path).resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def require_free_space(folder: Path, n_bytes: int, what: str) -> None:
    """Raise DiskSpaceError when ``folder``'s filesystem has less than ``n_bytes`` + a margin free."""
    free = shutil.disk_usage(_existing_parent(folder)).free
    needed = int(n_bytes) + MARGIN_BYTES
    if free < needed:
        raise DiskSpaceError(
            f"{folder}: not enough disk space for {what}: needs about {needed / 2**20:,.0f} MiB, "
            f"{free / 2**20:,.0f} MiB free. Free some space or choose another run_dir (--set run_dir=...)")
