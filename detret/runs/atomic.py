"""Atomic file writes: write a temporary file beside the target, then rename.

A reader (or a resumed run) therefore never sees a half-written artifact: the
target either does not exist or is complete. `os.replace` is atomic on POSIX
when both names are on one filesystem, which writing beside the target ensures.

Durable too (with ``fsync=True``, the default): the file's bytes are flushed
before the rename, and the folder after it (a rename lives in the folder, so
without that a power cut can undo it even though the file's bytes are on disk),
as is every folder created on the way. After the function returns, the new file
is there after a power cut.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Union

PathLike = Union[str, "os.PathLike[str]"]


def _process_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp creates 0600 files; artifacts get the permissions of any file the
# user writes (0666 less the umask), so a run directory can be shared.
_FILE_MODE = 0o666 & ~_process_umask()


def is_temporary(name: str) -> bool:
    """Whether a file name is one of :func:`atomic_path`'s temporary files (a leftover once its writer
    is gone: a killed process never renamed it into place)."""
    return name.startswith(".") and ".tmp" in name


def fsync_dir(folder: PathLike) -> None:
    """Flush a folder's entries (renames, new files, removals in it) to the disk."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def makedirs_durable(folder: PathLike) -> None:
    """``mkdir -p`` whose new folders survive a power cut (each one's parent flushed after it is made)."""
    folder = Path(folder)
    missing = []
    probe = folder
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    folder.mkdir(parents=True, exist_ok=True)
    for made in reversed(missing):
        fsync_dir(made.parent)


def durable_rename(src: PathLike, dst: PathLike) -> None:
    """``os.replace`` then flush the destination's folder (and the source's, when it is another)."""
    os.replace(src, dst)
    fsync_dir(Path(dst).parent)
    if Path(src).parent != Path(dst).parent:
        fsync_dir(Path(src).parent)


@contextlib.contextmanager
def atomic_path(target: PathLike, *, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write to; on success it replaces `target`.

    Keeps the target's suffix on the temporary name, since some writers choose
    the format from it (cv2.imwrite, np.save). On an exception the temporary
    file is removed and the target is left as it was.
    """
    target = Path(target)
    if fsync:
        makedirs_durable(target.parent)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".tmp{target.suffix}", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.chmod(tmp, _FILE_MODE)
        if fsync:
            durable_rename(tmp, target)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(target: PathLike, data: bytes, *, fsync: bool = True) -> None:
    with atomic_path(target, fsync=fsync) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(target: PathLike, text: str, *, fsync: bool = True) -> None:
    atomic_write_bytes(target, text.encode("utf-8"), fsync=fsync)


def atomic_write_json(target: PathLike, obj: Any, *, fsync: bool = True) -> None:
    """JSON with sorted keys and a trailing newline, so equal content gives equal bytes."""
    atomic_write_text(target, json.dumps(obj, indent=2, sort_keys=True) + "\n", fsync=fsync)
