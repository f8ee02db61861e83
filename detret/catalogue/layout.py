"""Where each part of a catalogue lives (see the package docstring)."""
from __future__ import annotations

import re
from pathlib import Path

DB_NAME = "catalogue.sqlite"
LOCK_NAME = "catalogue.lock"
MODEL_NAME = "model.json"

_SAFE_CATEGORY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


class CatalogueLayout:
    """The files of the catalogue directory ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def db(self) -> Path:
        return self.root / DB_NAME

    @property
    def lock(self) -> Path:
        return self.root / LOCK_NAME

    @property
    def model(self) -> Path:
        return self.root / MODEL_NAME

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def engines_dir(self) -> Path:
        """Exported models for the onnxruntime engine (made on first use; derived from models/, never edited)."""
        return self.root / "engines"

    @property
    def indexes_dir(self) -> Path:
        return self.root / "indexes"

    @property
    def journal_dir(self) -> Path:
        return self.root / "journal"

    def photo_file(self, sha256: str, suffix: str) -> str:
        """The stored photo's path relative to the catalogue (its content names it)."""
        return f"photos/{sha256[:2]}/{sha256}{suffix.lower()}"

    def index_file(self, category: str) -> Path:
        """The category's one FAISS file in a catalogue of schema 1 (``upgrade.py`` converts it)."""
        return self.indexes_dir / f"{check_category(category)}.faiss"

    def segment_dir(self, category: str) -> Path:
        """The folder of the category's segments and trained index (``segments.py``)."""
        return self.indexes_dir / check_category(category)

    def journal_file(self, change_id: int) -> Path:
        return self.journal_dir / f"{change_id:08d}.npz"

    def is_catalogue(self) -> bool:
        return self.db.is_file() and self.model.is_file()


def check_category(category: str) -> str:
    """The category, or ValueError when it cannot name a file (nor enter a Milvus filter): letters, digits,
    ``_``, ``.`` and ``-`` only, not starting with ``.`` or ``-``."""
    if not _SAFE_CATEGORY.match(category):
        raise ValueError(f"category {category!r} cannot name a file")
    return category
