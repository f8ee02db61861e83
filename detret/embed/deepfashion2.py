"""`detret embed --dataset deepfashion2`: descriptors of DeepFashion2 items, and their evaluation.

Every item of a split is cut by its annotated box and embedded (one model or an
ensemble, as for Street2Shop). ``<run_dir>/embed-df2-<name>/``: ``consumer.npy``,
``shop.npy`` (float32 [N, D]) with ``consumer_rows.jsonl`` / ``shop_rows.jsonl``
(image_id, item, pair_id, style, category, domain, box_xyxy) and ``skipped.jsonl``.
``run_eval_df2`` then writes ``<run_dir>/eval-df2/`` with Recall@K in both
directions (metrics.json, table.md).
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
from omegaconf import DictConfig

from ..data.deepfashion2 import DF2Item, load_deepfashion2
from ..evaluate.deepfashion2 import DEFAULT_KS, recall_at_k
from ..retrieval.model import load_checkpoint
from ..runs.atomic import atomic_path, atomic_write_json, atomic_write_text
from ..runs.stage import Stage, require_fresh
from ..utils.device import resolve_device
from .stage import embed_rows, resolve_models

DOMAINS = ("consumer", "shop")


def _item_from(obj: Dict) -> DF2Item:
    return DF2Item(**{**obj, "box_xyxy": tuple(obj["box_xyxy"])})


def run_embed_df2(pcfg: DictConfig, *, split: str = "validation", models: Optional[Sequence[str]] = None,
                  name: Optional[str] = None, workers: int = 2, force: bool = False,
                  command: Optional[str] = None) -> Dict:
    if not pcfg.data.deepfashion2.root:
        raise ValueError("data.deepfashion2.root is not set in the pipeline config")
    device = resolve_device(pcfg.device)
    chosen = resolve_models(pcfg, models)
    name = name or "+".join(n for n, _ in chosen)
    root = Path(pcfg.data.deepfashion2.root)
    out = Path(pcfg.run_dir) / f"embed-df2-{name}"
    inputs = {"annotations": root / split / "annos", "photos": root / split / "image"}
    inputs.update({f"model_{i}_{n}": p for i, (n, p) in enumerate(chosen)})
    stage = Stage(out, f"embed-df2-{name}", config={"split": split, "models": [n for n, _ in chosen]},
                  inputs=inputs, command=command, pipeline_config=pcfg)
    if stage.begin(force=force) == "done":
        return json.loads((out / "summary.json").read_text())
    data = load_deepfashion2(root, split)
    loaded = [load_checkpoint(p, device)[0] for _, p in chosen]
    parts = out / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    counts, skipped_all = {}, []
    for domain in DOMAINS:
        items = [it for it in data.items if it.domain == domain]
        desc, skipped = embed_rows(loaded, [data.image_path(it.image_id) for it in items],
                                   [it.box_xyxy for it in items], parts, domain, scales=(1.0,), device=device,
                                   batch_size=32, workers=workers, shard_size=512)
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
    summary = {"name": name, "split": split, **counts, "skipped": len(skipped_all)}
    atomic_write_json(out / "summary.json", summary)
    stage.complete({d: f"{d}.npy" for d in DOMAINS} | {f"{d}_rows": f"{d}_rows.jsonl" for d in DOMAINS}
                   | {"summary": "summary.json"})
    for p in parts.iterdir():
        p.unlink()
    parts.rmdir()
    return summary


def _read(folder: Path, domain: str):
    desc = np.load(folder / f"{domain}.npy", allow_pickle=False)
    items = [_item_from(json.loads(line)) for line in (folder / f"{domain}_rows.jsonl").read_text().splitlines()]
    return desc, items


def run_eval_df2(pcfg: DictConfig, names: Sequence[str], *, ks: Sequence[int] = DEFAULT_KS,
                 force: bool = False, command: Optional[str] = None) -> Dict[str, Dict]:
    run_dir = Path(pcfg.run_dir)
    inputs = {}
    for n in names:
        folder = run_dir / f"embed-df2-{n}"
        require_fresh(folder, f"the DeepFashion2 descriptors '{n}' (detret embed --dataset deepfashion2)")
        inputs.update({f"{n}:{d}": folder / f"{d}.npy" for d in DOMAINS})
    out = run_dir / "eval-df2"
    stage = Stage(out, "eval-df2", config={"runs": list(names), "ks": list(ks)}, inputs=inputs,
                  command=command, pipeline_config=pcfg)
    if stage.begin(force=force) == "done":
        return json.loads((out / "metrics.json").read_text())
    results: Dict[str, Dict] = {}
    for n in names:
        c, citems = _read(run_dir / f"embed-df2-{n}", "consumer")
        s, sitems = _read(run_dir / f"embed-df2-{n}", "shop")
        results[n] = {"consumer2shop": recall_at_k(c, citems, s, sitems, ks),
                      "shop2consumer": recall_at_k(s, sitems, c, citems, ks)}
    atomic_write_json(out / "metrics.json", results)
    lines = ["| Direction | Recall@K | " + " | ".join(names) + " |", "|---|---|" + "---:|" * len(names)]
    for direction in ("consumer2shop", "shop2consumer"):
        for k in ks:
            vals = [results[n][direction]["recall"][int(k)] for n in names]
            lines.append(f"| {direction} | {k} | " + " | ".join("" if v is None else f"{100 * v:.1f}" for v in vals)
                         + " |")
    atomic_write_text(out / "table.md", "\n".join(lines) + "\n")
    stage.complete({"metrics": "metrics.json", "table": "table.md"})
    return results
