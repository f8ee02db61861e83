"""``library:name``: which foundation model (see the package docstring)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ...config.choices import FOUNDATION_LIBRARIES, check_foundation_name

LIBRARIES = FOUNDATION_LIBRARIES
HUB_PREFIX = "hf-hub:"
LOCAL_PREFIX = "local-dir:"


@dataclass(frozen=True)
class FoundationSpec:
    """``library``: open_clip, timm or hf; ``name``: the model as that library names it (a built-in
    architecture, ``hf-hub:<repo>``, or for ``hf`` a hub repo or a local folder)."""

    library: str
    name: str

    @classmethod
    def parse(cls, text: str, field: str = "--descriptor") -> "FoundationSpec":
        return cls(*check_foundation_name(text, field))

    @staticmethod
    def looks_like(text: str) -> bool:
        """Whether ``text`` names a foundation model (rather than a trained run or a checkpoint)."""
        return str(text).partition(":")[0] in LIBRARIES and ":" in str(text)

    @property
    def hub_repo(self) -> Optional[str]:
        """The Hugging Face repository the name points at, if any (``hf-hub:`` names; ``hf:`` repos)."""
        if self.name.startswith(HUB_PREFIX):
            return self.name[len(HUB_PREFIX):]   # with its "@revision" when it has one
        if self.library == "hf" and not self.name.startswith((".", "/", "~")) and self.name.count("/") == 1:
            return self.name
        return None

    @property
    def safe_name(self) -> str:
        """A file-name-safe form (for the folder a run keeps the model in)."""
        keep = "".join(c if c.isalnum() or c in "-_." else "-" for c in self.name)
        return f"{self.library}-{keep.strip('-.')[:80]}"

    def __str__(self) -> str:
        return f"{self.library}:{self.name}"
