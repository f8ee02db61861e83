"""Export the ModaNet photos from the PaperDoll database to image files.

ModaNet's annotations name photos of the PaperDoll (Chictopia) collection, which
is published as an LMDB, ``photos.lmdb``, whose keys are the photo ids as ASCII
decimal strings and whose values are the JPEG bytes (the layout ModaNet's own
``make_images_from_lmdb.py`` reads). This exports the photos a ModaNet
annotation file names to ``<out>/<file_name>`` (``<id, 7 digits>.jpg``).

Unlike ModaNet's script, the bytes are written as stored (no re-encoding, so no
quality loss), after a decode check; a photo already exported with the same
bytes is left alone (resumable); ids absent from the database are listed in the
returned report.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Dict

from ..errors import InputError, MissingFileError
from ..runs.atomic import atomic_write_bytes
from ..utils.progress import progress
from .download import decode_problem


def export_modanet_images(lmdb_path: Path, annotations: Path, out_dir: Path) -> Dict:
    """Write every photo of `annotations` found in the PaperDoll LMDB; returns counts and problem ids."""
    try:
        import lmdb
    except ImportError as exc:
        raise ImportError("exporting from PaperDoll needs the 'lmdb' package: pip install lmdb") from exc
    lmdb_path, annotations, out_dir = Path(lmdb_path), Path(annotations), Path(out_dir)
    if not lmdb_path.exists():
        raise MissingFileError(f"{lmdb_path}: PaperDoll photos.lmdb not found")
    doc = json.loads(annotations.read_text())
    images = doc.get("images")
    if not isinstance(images, list):
        raise InputError(f"{annotations}: no 'images' list")
    report: Dict = {"exported": 0, "already_present": 0, "missing_in_database": [], "undecodable": []}
    env = lmdb.open(str(lmdb_path), readonly=True, lock=False, subdir=lmdb_path.is_dir())
    try:
        with env.begin() as txn:
            for img in progress(images, "exporting ModaNet photos"):
                data = txn.get(str(int(img["id"])).encode("ascii"))
                if data is None:
                    report["missing_in_database"].append(img["id"])
                    continue
                target = out_dir / img["file_name"]
                if target.is_file() and target.stat().st_size == len(data) and \
                        hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(data).digest():
                    report["already_present"] += 1
                    continue
                problem = decode_problem(data)
                if problem:
                    report["undecodable"].append({"id": img["id"], "reason": problem})
                    continue
                atomic_write_bytes(target, data, fsync=False)
                report["exported"] += 1
    finally:
        env.close()
    return report
