"""One finding of ``detret doctor``: what was looked at, what it found, and what to do about it."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, Sequence

STATES = ("ok", "info", "warn", "fail")   # fail: the configured pipeline cannot run


@dataclass(frozen=True)
class Check:
    area: str           # "device", "package", "detectron2", "faiss", "milvus", "weights", ...
    name: str
    state: str          # one of STATES
    detail: str
    fix: str = ""       # what to do, for warn and fail

    def to_json(self) -> Dict:
        return asdict(self)


def exit_status(checks: Sequence[Check]) -> int:
    """0 when the configured pipeline can run (no ``fail``), 1 otherwise."""
    return 1 if any(c.state == "fail" for c in checks) else 0
