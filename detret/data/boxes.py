"""The box type every stage passes around."""
from __future__ import annotations

from typing import Tuple

# (x0, y0, x1, y1) in pixels of the upright photo; x1 > x0 and y1 > y0 for a usable box.
BoxXYXY = Tuple[float, float, float, float]
