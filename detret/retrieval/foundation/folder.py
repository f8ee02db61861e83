"""The folder detret keeps a foundation model in: the weight files and a manifest, ``detret-foundation.json``
(format ``detret.foundation/1``)::

    {"format": "detret.foundation/1", "library": "open_clip", "name": "hf-hub:Marqo/marqo-fashionSigLIP",
     "origin": {"hub_repo": "Marqo/marqo-fashionSigLIP", "revision": "<commit>"} | {"path": "<given>"},
     "layout": "folder" | "weights-file", "architecture": null | "ViT-B-32", "weights_file": null | "<name>",
     "files": {"open_clip_config.json": "<sha256>", "open_clip_model.safetensors": "<sha256>"},
     "identity": "<sha256>"}

The files are hard links to where the weights were (the hub cache's blobs never change), or copies across
file systems. ``identity`` is the sha256 of what decides the descriptors: library, layout, architecture and
the files' hashes; never a path, a name or a revision (the same weights reached through the hub or a local
folder are the same model). It plays the part of a checkpoint's sha256 wherever a descriptor model is named
(``models.json`` of an ``embed`` run, a catalogue's ``model.json``); :func:`read_folder` checks every file
against its hash, so weights changed since are refused.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict

from ...errors import InputError, MissingFileError
from ...runs.atomic import atomic_write_json
from ...runs.manifest import sha256_file
from .sources import Source
from .spec import FoundationSpec

FOLDER_FORMAT = "detret.foundation/1"
MANIFEST_NAME = "detret-foundation.json"
IDENTITY_KEYS = ("format", "library", "layout", "architecture", "weights_file", "files")


@dataclass
class FoundationFolder:
    path: Path
    manifest: Dict

    @property
    def identity(self) -> str:
        return self.manifest["identity"]


def identity_of(manifest: Dict) -> str:
    decided_by = {k: manifest.get(k) for k in IDENTITY_KEYS}
    return hashlib.sha256(json.dumps(decided_by, sort_keys=True).encode()).hexdigest()


def is_foundation_folder(path: Path) -> bool:
    return Path(path).is_dir() and (Path(path) / MANIFEST_NAME).is_file()


def link_or_copy(src: Path, dst: Path) -> None:
    """``dst`` as a hard link to ``src`` (no copy of gigabytes of weights), or a copy across file systems."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.unlink()
    try:
        os.link(os.path.realpath(src), dst)
    except OSError:
        shutil.copyfile(src, dst)


def materialise(spec: FoundationSpec, source: Source, dest: Path) -> FoundationFolder:
    """The model folder at ``dest`` (rewritten), made of ``source``'s files; its dimension is measured by
    loading it (see :func:`detret.retrieval.foundation.net.load_foundation`)."""
    for rel in source.files:
        if Path(rel).is_absolute() or ".." in Path(rel).parts or rel == MANIFEST_NAME:
            raise InputError(f"{source.files[rel]}: a model file may not be named {rel!r}")
    if dest.exists():
        shutil.rmtree(dest)
    for rel, src in source.files.items():
        link_or_copy(src, dest / rel)
    manifest = {"format": FOLDER_FORMAT, "library": spec.library, "name": spec.name, "origin": source.origin,
                "layout": source.layout, "architecture": source.architecture, "weights_file": source.weights_file,
                "files": {rel: sha256_file(dest / rel) for rel in sorted(source.files)}}
    manifest["identity"] = identity_of(manifest)
    atomic_write_json(dest / MANIFEST_NAME, manifest)
    return FoundationFolder(dest, manifest)


def read_folder(path: Path, verify: bool = True) -> FoundationFolder:
    """The model folder at ``path``, each file checked against its hash (``verify``)."""
    path = Path(path)
    file = path / MANIFEST_NAME
    if not file.is_file():
        raise MissingFileError(f"{path}: not a foundation model folder (no {MANIFEST_NAME})")
    manifest = json.loads(file.read_text())
    if manifest.get("format") != FOLDER_FORMAT:
        raise InputError(f"{file}: format {manifest.get('format')!r}, expected {FOLDER_FORMAT}")
    if manifest.get("identity") != identity_of(manifest):
        raise InputError(f"{file}: its identity does not match its content (edited by hand?)")
    for rel, expected in manifest["files"].items():
        target = path / rel
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise InputError(f"{file}: file name {rel!r} leaves the folder")
        if not target.is_file():
            raise MissingFileError(f"{target}: weights file of the foundation model {manifest['library']}:"
                                   f"{manifest['name']} is missing")
        if verify and sha256_file(target) != expected:
            raise InputError(f"{target}: not the weights the model was recorded with (sha256 differs)")
    return FoundationFolder(path, manifest)


def copy_folder(src: Path, dst: Path) -> None:
    """A model folder copied (files hard-linked where possible), e.g. into a catalogue's ``models/``."""
    model = read_folder(src)
    if dst.exists():
        shutil.rmtree(dst)
    for rel in [*model.manifest["files"], MANIFEST_NAME]:
        link_or_copy(src / rel, dst / rel)
