"""Where a foundation model's weights come from: a local file or folder, or the Hugging Face hub's cache.

- ``--weights FOLDER``: a model saved in the library's own format (open_clip's ``open_clip_config.json`` +
  weights, timm's ``config.json`` + weights, a transformers ``save_pretrained`` folder);
- ``--weights FILE``: the weights of a built-in open_clip or timm architecture (``open_clip:ViT-B-32``);
- neither: a hub name (``hf-hub:<repo>``, an ``hf:`` repo, or a timm name whose pretrained tag points at a
  hub repo) is looked up in the local Hugging Face cache and downloaded only when the machine is online
  (``HF_HUB_OFFLINE`` unset); a local ``hf:`` folder is read as it is.

Nothing is downloaded without a hub name, and a missing model is a :class:`PretrainedWeightsMissing` that
names the model and the ways to provide it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from ...errors import InputError
from ..backbones import PretrainedWeightsMissing
from .families import CONFIGS, WEIGHTS, folder_files
from .spec import HUB_PREFIX, FoundationSpec


@dataclass
class Source:
    """The files a model folder is made of (relative name -> where it is now) and how they load."""

    layout: str                          # "folder" (the library's own format) or "weights-file"
    files: Dict[str, Path] = field(default_factory=dict)
    architecture: Optional[str] = None   # a built-in architecture, with layout "weights-file"
    weights_file: Optional[str] = None
    origin: Dict = field(default_factory=dict)   # {"hub_repo", "revision"} or {"path"}


def _missing(spec: FoundationSpec, why: str) -> PretrainedWeightsMissing:
    return PretrainedWeightsMissing(
        f"{spec}: {why}. Provide the model with --weights FILE_OR_FOLDER (a folder saved in {spec.library}'s own "
        "format, or a weights file of a built-in architecture), or put it in the Hugging Face cache on a machine "
        "that is online (huggingface-cli download REPO) and copy the cache (HF_HOME) here")


def _from_folder(spec: FoundationSpec, folder: Path, origin: Dict) -> Source:
    names = folder_files(spec.library, folder)
    return Source("folder", {n: folder / n for n in names}, origin=origin)


def _from_file(spec: FoundationSpec, weights: Path) -> Source:
    if spec.library == "hf":
        raise InputError(f"{weights}: an hf: model is a folder (save_pretrained), not one file")
    if spec.name.startswith(HUB_PREFIX):
        raise InputError(f"{spec}: a hub name loads a folder; give --weights FOLDER, or a built-in "
                         f"architecture name with a weights file")
    _check_builtin(spec)
    return Source("weights-file", {weights.name: weights}, architecture=spec.name, weights_file=weights.name,
                  origin={"path": str(weights.resolve())})


def _check_builtin(spec: FoundationSpec) -> None:
    from .families import require_library

    lib = require_library(spec.library)
    known = spec.name in lib.list_models() if spec.library == "open_clip" else lib.is_model(spec.name)
    if not known:
        raise InputError(f"{spec}: not a built-in {spec.library} architecture (list them with "
                         f"{'open_clip.list_models()' if spec.library == 'open_clip' else 'timm.list_models()'})")


def _timm_hub_repo(spec: FoundationSpec) -> Optional[str]:
    """The hub repo of a timm name with a pretrained tag (``vit_small_patch14_dinov2.lvd142m``)."""
    from timm.models import get_pretrained_cfg

    _check_builtin(spec)
    cfg = get_pretrained_cfg(spec.name, allow_unregistered=False)
    return getattr(cfg, "hf_hub_id", None) or None


def _patterns(library: str, weights: str) -> List[str]:
    extra = ["*.index.json", weights.replace(".index.json", "*")] if weights.endswith(".index.json") else []
    return CONFIGS[library] + [weights] + extra


def _from_hub(spec: FoundationSpec, repo: str, local_only: bool = False) -> Source:
    """The repo's files from the cache (downloaded when online, unless ``local_only``): one weights format, the
    first found."""
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError

    repo, _, revision = repo.partition("@")
    offline = bool(constants.HF_HUB_OFFLINE) or local_only
    folder, errors = None, []
    for weights in WEIGHTS[spec.library]:
        try:
            folder = Path(huggingface_hub.snapshot_download(repo, revision=revision or None,
                                                            allow_patterns=_patterns(spec.library, weights),
                                                            local_files_only=offline))
        except (LocalEntryNotFoundError, OSError, ValueError) as exc:
            errors.append(f"{type(exc).__name__}")
            continue
        if (folder / weights).is_file():
            break
        folder = None
    if folder is None:
        where = ("not in the Hugging Face cache (looked for without downloading)" if local_only else
                 "not in the Hugging Face cache and the machine is offline (HF_HUB_OFFLINE)") if offline else \
            f"could not be fetched from the hub nor found in the cache ({', '.join(sorted(set(errors)))})"
        raise _missing(spec, where)
    return _from_folder(spec, folder, {"hub_repo": repo, "revision": folder.name})


def locate(spec: FoundationSpec, weights: Optional[Path] = None, local_only: bool = False) -> Source:
    """Where the model's files are (see the module docstring); ``local_only``: never download."""
    if weights is not None:
        weights = Path(weights).expanduser()
        if weights.is_dir():
            return _from_folder(spec, weights, {"path": str(weights.resolve())})
        if weights.is_file():
            return _from_file(spec, weights)
        raise _missing(spec, f"--weights {weights} does not exist")
    if spec.library == "hf" and Path(os.path.expanduser(spec.name)).is_dir():
        folder = Path(os.path.expanduser(spec.name))
        return _from_folder(spec, folder, {"path": str(folder.resolve())})
    repo = spec.hub_repo or (_timm_hub_repo(spec) if spec.library == "timm" else None)
    if repo is None:
        raise _missing(spec, "no weights given and the name points at no hub repository")
    return _from_hub(spec, repo, local_only)
