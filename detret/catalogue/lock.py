"""One writer at a time: an exclusive ``fcntl`` lock on ``catalogue.lock``.

The lock belongs to the open file description, so it is released when the process ends,
however it ends (a SIGKILL included): a killed writer never leaves a stale lock. The file
holds the holder's pid and command, for the error the next writer gets.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Optional

from ..errors import DetretError


class CatalogueBusy(DetretError):
    """Another process is changing the catalogue."""


class WriterLock:
    def __init__(self, path: Path, holder: str) -> None:
        self.path, self.holder = Path(path), holder
        self._fd: Optional[int] = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise CatalogueBusy(f"{self.path.parent}: {other} is changing this catalogue; only one writer at a "
                                "time (try again when it has finished)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} ({self.holder})\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "WriterLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
