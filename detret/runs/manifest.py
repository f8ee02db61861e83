"""Stage manifests: what a stage was built from, so that stale artifacts are refused.

Every stage writes ``manifest.json`` into its folder (format below, JSON with
sorted keys). It is written once with ``"state": "running"`` when the stage
starts and replaced atomically with ``"state": "complete"`` when every output
is written, so an interrupted stage is never taken for a finished one.

```
{
  "format": "detret.manifest/1",
  "stage": "data-synth",                 # stage name
  "state": "running" | "complete",
  "command": "detret data synth ...",   # what to run to rebuild it
  "created_utc": "2026-11-22T17:00:00Z",
  "config": {...},  "config_sha256": "...",
  "inputs":  {name: fingerprint},       # files and folders read
  "outputs": {name: fingerprint},       # files and folders written (paths relative to the stage folder)
  "versions": {"python": ..., "torch": ..., "detectron2": ..., ...},
  "git": {"revision": "...", "dirty": false} | null,
  "fingerprints": 2                      # FINGERPRINTS of the detret that wrote it (absent: 1)
}
fingerprint = {"path": str, "kind": "file" | "dir" | "missing",
               "sha256": str | null, "n_files": int (dirs), "n_bytes": int}
```

A file's fingerprint is the sha256 of its content. A folder's is the sha256 of
its listing: every file's relative path and size, in sorted order. Hashing the
content of 400,000 photos would take longer than some stages, and a listing
catches the changes that happen in practice (photos added, removed, truncated,
re-downloaded at another size); a same-size in-place edit of a photo is not
seen, and ``--force`` rebuilds whatever the manifest cannot tell.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from ..errors import InputError
from .atomic import atomic_write_json

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "detret.manifest/1"
# How this detret fingerprints a stage (which config keys, spelled how): a run recorded under another
# version is stale, whatever its config says, and `detret status` names the command that rebuilds it.
# Bump it with any change to what a stage's config records; there are no rules for older records.
FINGERPRINTS = 2
_HASH_CHUNK_BYTES = 1 << 20

# Distribution names whose versions are recorded (detectron2 has two spellings).
_TRACKED_DISTRIBUTIONS = (
    "detret", "torch", "torchvision", "detectron2", "sal-detectron2",
    "faiss-gpu", "faiss-cpu", "numpy", "opencv-python-headless", "pycocotools",
)


# sha256 by (path, inode, size, mtime in ns): within one process a file is read once however
# many stages name it (`detret report` and `detret demo` check every stage's inputs and
# outputs; at full scale the descriptor files are GBs). detret replaces files by atomic
# rename, which gives a new inode, and an in-place write moves the mtime; but the kernel's
# file clock is coarse (milliseconds), so, as git does with its index, a file modified in
# the last seconds is not remembered: a same-size rewrite within one clock tick would
# keep its key.
_SHA256_SEEN: Dict[tuple, str] = {}
_RACY_NS = 3 * 10 ** 9


def sha256_file(path: Path) -> str:
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_ino, st.st_size, st.st_mtime_ns)
    known = _SHA256_SEEN.get(key)
    if known is not None:
        return known
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_HASH_CHUNK_BYTES), b""):
            digest.update(chunk)
    if time.time_ns() - st.st_mtime_ns > _RACY_NS:
        _SHA256_SEEN[key] = digest.hexdigest()
    return digest.hexdigest()


def config_hash(cfg: Any) -> str:
    """sha256 of a config's canonical JSON form (sorted keys)."""
    from omegaconf import DictConfig, OmegaConf

    plain = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    text = json.dumps(plain, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def fingerprint(path: Path) -> Dict[str, Any]:
    """Fingerprint of a file (content hash) or folder (listing hash); see module doc."""
    path = Path(path)
    if path.is_file():
        return {"path": str(path), "kind": "file", "sha256": sha256_file(path), "n_bytes": path.stat().st_size}
    if path.is_dir():
        digest = hashlib.sha256()
        n_files = n_bytes = 0
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                full = Path(root) / name
                size = full.stat().st_size
                digest.update(f"{full.relative_to(path).as_posix()}\0{size}\n".encode())
                n_files += 1
                n_bytes += size
        return {"path": str(path), "kind": "dir", "sha256": digest.hexdigest(), "n_files": n_files, "n_bytes": n_bytes}
    return {"path": str(path), "kind": "missing", "sha256": None, "n_bytes": 0}


def package_versions() -> Dict[str, str]:
    versions = {"python": platform.python_version()}
    for dist in _TRACKED_DISTRIBUTIONS:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_state(source_dir: Optional[Path] = None) -> Optional[Dict[str, Any]]:
    """Revision of the detret checkout this code runs from, or None when it is not one."""
    source_dir = Path(__file__).resolve().parents[2] if source_dir is None else source_dir
    if not (source_dir / ".git").exists():
        return None
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source_dir, capture_output=True, text=True, timeout=10)
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=source_dir, capture_output=True, text=True, timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if rev.returncode != 0:
        return None
    return {"revision": rev.stdout.strip(), "dirty": bool(status.stdout.strip())}


@dataclass
class Manifest:
    stage: str
    command: str
    config: Dict[str, Any]
    config_sha256: str
    inputs: Dict[str, Dict[str, Any]]
    outputs: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    state: str = "running"
    created_utc: str = ""
    versions: Dict[str, str] = field(default_factory=dict)
    git: Optional[Dict[str, Any]] = None
    fingerprints: int = FINGERPRINTS

    def to_json(self) -> Dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT, "stage": self.stage, "state": self.state, "command": self.command,
            "created_utc": self.created_utc, "config": self.config, "config_sha256": self.config_sha256,
            "inputs": self.inputs, "outputs": self.outputs, "versions": self.versions, "git": self.git,
            "fingerprints": self.fingerprints,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], source: Path) -> "Manifest":
        if obj.get("format") != MANIFEST_FORMAT:
            raise InputError(f"{source}: not a detret manifest (format {obj.get('format')!r}, expected {MANIFEST_FORMAT!r})")
        try:
            return cls(
                stage=obj["stage"], command=obj["command"], config=obj["config"],
                config_sha256=obj["config_sha256"], inputs=obj["inputs"], outputs=obj["outputs"],
                state=obj["state"], created_utc=obj["created_utc"], versions=obj["versions"], git=obj["git"],
                fingerprints=int(obj.get("fingerprints", 1)),
            )
        except KeyError as exc:
            raise InputError(f"{source}: manifest lacks the key {exc}") from exc


def another_version(manifest: Manifest) -> str:
    """Why a run recorded under another fingerprint version is stale."""
    return (f"made by a detret that fingerprints its runs differently (version {manifest.fingerprints}, "
            f"this detret {FINGERPRINTS}): rebuild it")


def write_manifest(stage_dir: Path, manifest: Manifest) -> Path:
    if not manifest.created_utc:
        manifest.created_utc = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if not manifest.versions:
        manifest.versions = package_versions()
    path = Path(stage_dir) / MANIFEST_NAME
    atomic_write_json(path, manifest.to_json())
    return path


def read_manifest(stage_dir: Path) -> Optional[Manifest]:
    """The stage's manifest, or None when the stage has never started."""
    path = Path(stage_dir) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        obj = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: manifest is not valid JSON ({exc})") from exc
    return Manifest.from_json(obj, path)


def changed_entries(recorded: Mapping[str, Mapping[str, Any]], base_dir: Optional[Path] = None) -> List[str]:
    """Names of recorded fingerprints that no longer match the disk, with the reason."""
    problems = []
    for name, fp in sorted(recorded.items()):
        path = Path(fp["path"])
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
        now = fingerprint(path)
        if now["kind"] == "missing" and fp["kind"] != "missing":
            problems.append(f"{name} ({path}) is missing")
        elif now["sha256"] != fp["sha256"]:
            problems.append(f"{name} ({path}) changed")
    return problems
