"""The pipeline's side of ``detret doctor``: can the configured device, detector, retrieval models, foundation
model and catalogue be used here, and are the datasets where the config says. Nothing is downloaded or
loaded: files are looked for (and a catalogue's model files hashed)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from ..errors import DetretError
from .checks import Check

URL_PREFIXES = ("http://", "https://", "detectron2://", "catalog://")


def device_check(pcfg) -> Check:
    from ..utils.device import resolve_device

    try:
        return Check("pipeline", "device", "ok", f"device {pcfg.device!r} -> {resolve_device(pcfg.device)}")
    except DetretError as exc:
        return Check("pipeline", "device", "fail", str(exc), "--set device=cpu (or auto)")


def _cached_url(url: str) -> Optional[Path]:
    """Where iopath keeps a downloaded ``url`` (without downloading it); None when it cannot say."""
    from iopath.common.file_io import get_cache_dir
    from urllib.parse import urlparse

    if url.startswith("detectron2://"):
        url = "https://dl.fbaipublicfiles.com/detectron2/" + url[len("detectron2://"):]
    parsed = urlparse(url)
    return Path(get_cache_dir()) / parsed.path.lstrip("/") if parsed.scheme in ("http", "https") else None


def _weights_check(name: str, weights: str, fix: str, missing_state: str = "fail") -> Check:
    if weights.startswith(URL_PREFIXES):
        cached = _cached_url(weights)
        if cached is not None and cached.is_file():
            return Check("weights", name, "ok", f"{weights}: in the download cache ({cached})")
        return Check("weights", name, "warn", f"{weights}: not in the download cache; fetched on first use, which "
                     "fails offline", fix)
    if Path(weights).is_file():
        return Check("weights", name, "ok", f"{weights}")
    return Check("weights", name, missing_state, f"{weights}: no such file", fix)


def detector_checks(pcfg) -> List[Check]:
    from ..runs.layout import RunLayout

    try:
        from ..detect.config import build_detector_cfg
    except ImportError as exc:
        return [Check("weights", "detector", "fail", f"Detectron2 cannot be imported ({exc})", "bash tools/install.sh")]
    try:
        cfg = build_detector_cfg(pcfg.detector.config_file, list(pcfg.detector.opts))
    except DetretError as exc:
        return [Check("weights", "detector config", "fail", str(exc), "a file of detectron_configs/")]
    out = [Check("weights", "detector config", "ok", f"{pcfg.detector.config_file}: {cfg.MODEL.META_ARCHITECTURE}, "
                 f"{cfg.MODEL.BACKBONE.NAME}, crop policy {cfg.DETRET.CROP.POLICY}")]
    if pcfg.detector.weights:
        out.append(_weights_check("detector", str(pcfg.detector.weights), "--set detector.weights=/local/file.pth"))
        return out
    trained = RunLayout(pcfg.run_dir).detector / "model_final.pth"
    out.append(_weights_check("detector", str(trained), "detret train-detector (or --set detector.weights=FILE)",
                              missing_state="warn"))
    if cfg.MODEL.WEIGHTS:   # what train-detector starts from
        out.append(_weights_check("detector's initial weights", str(cfg.MODEL.WEIGHTS), "download them where the "
                                  "network is reachable and pass MODEL.WEIGHTS /local/file", missing_state="warn"))
    return out


def retrieval_checks(pcfg) -> List[Check]:
    from ..runs.layout import MODEL_FILE, RunLayout

    out = []
    for m in pcfg.retrieval.models:
        path = m.checkpoint or str(RunLayout(pcfg.run_dir).retrieval(m.name) / MODEL_FILE)
        out.append(_weights_check(f"retrieval model {m.name}", path, f"detret train-retrieval --name {m.name}, or "
                                  "set its checkpoint"))
    return out


def dataset_checks(pcfg) -> List[Check]:
    out = []
    for name, root in (("street2shop", pcfg.data.street2shop.root), ("modanet photos", pcfg.data.modanet.images),
                       ("deepfashion2", pcfg.data.deepfashion2.root)):
        if not root:
            out.append(Check("data", name, "info", "not configured (needed for the paper's stages, not for a "
                             "catalogue)"))
        else:
            state = "ok" if Path(root).is_dir() else "warn"
            out.append(Check("data", name, state, f"{root}{'' if state == 'ok' else ': no such folder'}",
                             "" if state == "ok" else "see datasets/README.md"))
    return out


def foundation_check(descriptor: str, weights: Optional[Path]) -> Check:
    from ..retrieval.foundation import FoundationSpec
    from ..retrieval.foundation.sources import locate

    try:
        spec = FoundationSpec.parse(descriptor)
        source = locate(spec, weights, local_only=True)
    except DetretError as exc:
        return Check("weights", f"foundation {descriptor}", "fail", str(exc))
    where = source.origin.get("path") or f"hub cache {source.origin.get('hub_repo')}@{source.origin.get('revision')}"
    return Check("weights", f"foundation {descriptor}", "ok", f"{where}: {', '.join(sorted(source.files))}")


def catalogue_check(root: Path) -> Check:
    from ..catalogue.binding import read_card, verify_model_files

    try:
        card = read_card(Path(root))
        verify_model_files(card, Path(root))
    except DetretError as exc:
        return Check("catalogue", str(root), "fail", str(exc))
    return Check("catalogue", str(root), "ok", f"model files intact (run {card.run!r}, dimension {card.dim}, "
                 f"detector {'yes' if card.detector else 'none'})")


def pipeline_checks(pcfg, descriptor: Optional[str] = None, weights: Optional[Path] = None,
                    catalogue: Optional[Path] = None) -> List[Check]:
    out: List[Check] = []
    if pcfg is not None:
        out += [device_check(pcfg)] + detector_checks(pcfg) + retrieval_checks(pcfg) + dataset_checks(pcfg)
    if descriptor:
        out.append(foundation_check(descriptor, weights))
    if catalogue is not None:
        out.append(catalogue_check(catalogue))
    return out
