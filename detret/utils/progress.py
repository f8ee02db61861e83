"""Progress bars that speak in the stage's unit and stay quiet in logs.

tqdm with ``disable=None`` draws only on a terminal, so CI logs and redirected
output get no carriage-return noise; stages log a summary line instead.
"""
from __future__ import annotations

from typing import Iterable, Optional, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress(items: Iterable[T], desc: str, unit: str = "photo", total: Optional[int] = None) -> Iterable[T]:
    return tqdm(items, desc=desc, unit=unit, total=total, leave=False, disable=None, dynamic_ncols=True)


def counter(desc: str, total: Optional[int], unit: str = "photo") -> tqdm:
    """A bar advanced by hand (``bar.update(n)``) for work that arrives in uneven chunks."""
    return tqdm(desc=desc, unit=unit, total=total, leave=False, disable=None, dynamic_ncols=True)
