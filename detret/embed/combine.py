"""`detret combine`: an ensemble of descriptor runs already computed (Section 3.2).

Row-aligned descriptors of the members are concatenated and L2-normalised. Each member
keeps its own crops (e.g. Tri DB F with whole shop photos and Tri DB C with detected
crops, the paper's "Tris"); rows are matched by (domain, category, photo, record), and
only rows present in every member are kept. A row missing from any member is missing
from the ensemble: ``skipped.jsonl`` lists the members' skipped rows, once each.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from ..errors import InputError
from ..runs.atomic import atomic_write_json, atomic_write_text
from ..runs.layout import RunLayout
from ..runs.stage import Stage, require_fresh
from .artifact import Row, read_descriptors, read_skipped, write_descriptors
from .stage import DESCRIPTOR_OUTPUTS


def _row_key(r: Row) -> tuple:
    return (r.domain, r.category, r.photo_id, r.record)


def combine_side(members: List[Tuple[np.ndarray, List[Row]]]) -> Tuple[np.ndarray, List[Row]]:
    """The rows every member has, in the first member's order, and their concatenated, L2-normalised descriptors."""
    keys = [{_row_key(r): i for i, r in enumerate(rows)} for _, rows in members]
    common = [r for r in members[0][1] if all(_row_key(r) in k for k in keys[1:])]
    parts = [desc[[k[_row_key(r)] for r in common]] for (desc, _), k in zip(members, keys)]
    return F.normalize(torch.from_numpy(np.concatenate(parts, axis=1)), dim=1).numpy(), common


def _members_skipped(folders: Sequence[Path]) -> List[Dict]:
    skipped: Dict[tuple, Dict] = {}
    for f in folders:
        for s in read_skipped(f):
            skipped.setdefault((s["side"], s["category"], s["photo_id"]), s)
    return [skipped[k] for k in sorted(skipped)]


def run_combine(pcfg: DictConfig, names: Sequence[str], name: str, *, force: bool = False,
                command: Optional[str] = None) -> Dict:
    """The ensemble ``name`` of the descriptor runs ``names`` (see the module docstring)."""
    if len(names) < 2:
        raise InputError(f"an ensemble needs at least two descriptor runs, got {list(names)}")
    layout = RunLayout(pcfg.run_dir)
    folders = [layout.embed(n) for n in names]
    for n, f in zip(names, folders):
        require_fresh(f, f"the descriptors '{n}' (detret embed)")
    inputs = {f"{n}:{side}": f / f"{side}.npy" for n, f in zip(names, folders) for side in ("gallery", "queries")}
    stage = Stage(layout.embed(name), layout.embed(name).name, config={"combine": list(names)}, inputs=inputs,
                  command=command, pipeline_config=pcfg)
    reused = stage.reuse_or_begin(force=force)
    if reused is not None:
        return reused
    out = stage.stage_dir
    counts, dim = {}, 0
    for side in ("gallery", "queries"):
        combined, rows = combine_side([read_descriptors(f, side) for f in folders])
        write_descriptors(out, side, combined, rows)
        counts[side], dim = len(rows), int(combined.shape[1])
    skipped = _members_skipped(folders)
    atomic_write_text(out / "skipped.jsonl", "".join(json.dumps(s, sort_keys=True) + "\n" for s in skipped))
    atomic_write_json(out / "models.json", {"combine": list(names)})
    summary = {"name": name, "combine": list(names), "gallery": counts["gallery"], "queries": counts["queries"],
               "skipped": len(skipped), "dim": dim, "models": list(names), "gallery_crops": "per member"}
    return stage.finish(summary, DESCRIPTOR_OUTPUTS)
