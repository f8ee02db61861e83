"""`detret embed-df2`: descriptors of DeepFashion2 items.

Every item of a split is cut by its annotated box and embedded (one model or an
ensemble, as for Street2Shop). ``<run_dir>/embed-df2-<name>/``: ``consumer.npy``,
``shop.npy`` (float32 [N, D]) with ``consumer_rows.jsonl`` / ``shop_rows.jsonl``
(image_id, item, pair_id, style, category, domain, box_xyxy) and ``skipped.jsonl``.
``detret eval-df2`` (``evaluate/deepfashion2_stage.py``) reads them
with :func:`read_df2_descriptors`.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from omegaconf import DictConfig

from ..data.deepfashion2 import DF2Item, load_deepfashion2
from ..errors import InputError
from ..retrieval.descriptor_model import load_descriptor_model
from ..runs.atomic import atomic_path, atomic_write_text
from ..runs.layout import RunLayout
from ..runs.stage import Stage
from ..utils.device import resolve_device
from .inference import clear_parts, embed_rows
from .stage import resolve_models

DOMAINS = ("consumer", "shop")


def _item_from(obj: Dict) -> DF2Item:
    return DF2Item(**{**obj, "box_xyxy": tuple(obj["box_xyxy"])})


def run_embed_df2(pcfg: DictConfig, *, split: str = "validation", models: Optional[Sequence[str]] = None,
                  name: Optional[str] = None, workers: int = 2, force: bool = False,
                  command: Optional[str] = None) -> Dict:
    if not pcfg.data.deepfashion2.root:
        raise InputError("data.deepfashion2.root is not set in the pipeline config")
    device = resolve_device(pcfg.device)
    chosen = resolve_models(pcfg, models)
    name = name or "+".join(n for n, _ in chosen)
    root = Path(pcfg.data.deepfashion2.root)
    out = RunLayout(pcfg.run_dir).embed_df2(name)
    inputs = {"annotations": root / split / "annos", "photos": root / split / "image"}
    inputs.update({f"model_{i}_{n}": p for i, (n, p) in enumerate(chosen)})
    stage = Stage(out, out.name, config={"split": split, "models": [n for n, _ in chosen]},
                  inputs=inputs, command=command, pipeline_config=pcfg)
    reused = stage.reuse_or_begin(force=force)
    if reused is not None:
        return reused
    data = load_deepfashion2(root, split)
    loaded = [load_descriptor_model(p, device) for _, p in chosen]
    parts = out / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    counts, skipped_all = {}, []
    for domain in DOMAINS:
        items = [it for it in data.items if it.domain == domain]
        desc, skipped = embed_rows(loaded, [data.image_path(it.image_id) for it in items],
                                   [it.box_xyxy for it in items], parts, domain, scales=(1.0,), device=device,
                                   batch_size=32, workers=workers, shard_size=512,
                                   domain="shop" if domain == "shop" else "street")  # consumer photos: street
        bad = {s["row"] for s in skipped}
        keep = [i for i in range(len(items)) if i not in bad]
        with atomic_path(out / f"{domain}.npy") as tmp:
            np.save(tmp, np.ascontiguousarray(desc[keep], dtype=np.float32))
        atomic_write_text(out / f"{domain}_rows.jsonl",
                          "".join(json.dumps(asdict(items[i]), sort_keys=True) + "\n" for i in keep))
        skipped_all += [{"domain": domain, "image_id": items[s["row"]].image_id, "reason": s["reason"]}
                        for s in skipped]
        counts[domain] = len(keep)
    atomic_write_text(out / "skipped.jsonl", "".join(json.dumps(s) + "\n" for s in skipped_all))
    summary = stage.finish({"name": name, "split": split, **counts, "skipped": len(skipped_all)},
                           {d: f"{d}.npy" for d in DOMAINS} | {f"{d}_rows": f"{d}_rows.jsonl" for d in DOMAINS})
    clear_parts(parts, remove_folder=True)
    return summary


def read_df2_descriptors(folder: Path, domain: str) -> Tuple[np.ndarray, List[DF2Item]]:
    """(descriptors float32 [N, D], the N items) of one domain of an ``embed-df2-<name>`` folder."""
    desc = np.load(Path(folder) / f"{domain}.npy", allow_pickle=False)
    items = [_item_from(json.loads(line)) for line in (Path(folder) / f"{domain}_rows.jsonl").read_text().splitlines()]
    return desc, items
