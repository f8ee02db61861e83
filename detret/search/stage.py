"""`detret search`: the top-k shop photos of each street query, within its category.

Writes ``<run_dir>/search-<name>/``:

- ``topk_rows.npy`` int64 [Q, k]: gallery rows (of ``embed-<name>/gallery.npy``) in
  ranked order, -1 past the end of a small category; ``topk_scores.npy`` float32 [Q, k];
  row q is query row q of ``embed-<name>/queries.npy``;
- ``rankings.jsonl``: the same, readable: per query its photo, category, record and
  ``[[shop photo id, product id, score], ...]``;
- ``indexes/<category>.faiss`` (``faiss.write_index``) with ``indexes/index_meta.json``
  (factory string and gallery hash): reused by later runs while they match.
"""
from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path
from typing import Dict, Optional

from .faiss_lib import faiss
import numpy as np
from omegaconf import DictConfig

from ..embed.artifact import read_descriptors
from ..runs.atomic import atomic_path, atomic_write_json, atomic_write_text
from ..runs.manifest import sha256_file
from ..runs.stage import Stage, require_fresh
from ..utils.disk import require_free_space
from ..utils.progress import progress
from .index import build_index, for_search, search

logger = logging.getLogger(__name__)


def index_file_name(category: str) -> str:
    """``indexes/<this>``: the saved FAISS index of a category (a "/" in a name would make a folder)."""
    return category.replace("/", "_") + ".faiss"


def run_search(pcfg: DictConfig, embed_name: str, *, k: int = 50, factory: str = "Flat", use_gpu: bool = True,
               force: bool = False, command: Optional[str] = None) -> Dict:
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    run_dir = Path(pcfg.run_dir)
    embed_dir = run_dir / f"embed-{embed_name}"
    require_fresh(embed_dir, f"the descriptors '{embed_name}' (detret embed)")
    out = run_dir / f"search-{embed_name}"
    inputs = {"gallery": embed_dir / "gallery.npy", "queries": embed_dir / "queries.npy",
              "gallery_rows": embed_dir / "gallery_rows.jsonl", "query_rows": embed_dir / "queries_rows.jsonl"}
    stage = Stage(out, f"search-{embed_name}", config={"k": k, "factory": factory}, inputs=inputs,
                  command=command, pipeline_config=pcfg)
    if stage.begin(force=force) == "done":
        logger.info("%s: rankings up to date, reused", out)
        return json.loads((out / "summary.json").read_text())
    gallery, grows = read_descriptors(embed_dir, "gallery")
    queries, qrows = read_descriptors(embed_dir, "queries")
    if gallery.shape[1] != queries.shape[1]:
        raise ValueError(f"{embed_dir}: gallery dimension {gallery.shape[1]} != query dimension {queries.shape[1]}")
    # the indexes (exact: a copy of the gallery) and the top-k arrays
    require_free_space(out, gallery.nbytes + queries.shape[0] * k * 12, "the FAISS indexes and rankings")
    g_by_cat, q_by_cat = defaultdict(list), defaultdict(list)
    for i, r in enumerate(grows):
        g_by_cat[r.category].append(i)
    for i, r in enumerate(qrows):
        q_by_cat[r.category].append(i)
    index_dir = out / "indexes"
    meta_path = index_dir / "index_meta.json"
    gallery_sha = sha256_file(embed_dir / "gallery.npy")
    cached = meta_path.is_file() and json.loads(meta_path.read_text()) == {"factory": factory,
                                                                             "gallery_sha256": gallery_sha}
    top_rows = np.full((len(qrows), k), -1, np.int64)
    top_scores = np.full((len(qrows), k), -np.inf, np.float32)
    empty_categories = []
    for cat in progress(sorted(set(g_by_cat) | set(q_by_cat)), "searching", unit="category"):
        g_idx = np.array(g_by_cat.get(cat, []), np.int64)
        q_idx = np.array(q_by_cat.get(cat, []), np.int64)
        if len(g_idx) == 0:
            empty_categories.append(cat)
            continue
        path = index_dir / index_file_name(cat)
        if cached and path.is_file():
            index = faiss.read_index(str(path))
        else:
            index = build_index(gallery[g_idx], factory)
            with atomic_path(path) as tmp:
                faiss.write_index(index, str(tmp))
        if len(q_idx):
            scores, local = search(for_search(index, use_gpu), queries[q_idx], k)
            top_scores[q_idx] = scores
            top_rows[q_idx] = np.where(local >= 0, g_idx[np.clip(local, 0, None)], -1)
    atomic_write_json(meta_path, {"factory": factory, "gallery_sha256": gallery_sha})
    with atomic_path(out / "topk_rows.npy") as tmp:
        np.save(tmp, top_rows)
    with atomic_path(out / "topk_scores.npy") as tmp:
        np.save(tmp, top_scores)
    lines = []
    for qi, r in enumerate(qrows):
        results = [[grows[j].photo_id, grows[j].product_id, round(float(s), 6)]
                   for j, s in zip(top_rows[qi], top_scores[qi]) if j >= 0]
        lines.append(json.dumps({"query_row": qi, "photo_id": r.photo_id, "product_id": r.product_id,
                                 "category": r.category, "record": r.record, "results": results}) + "\n")
    atomic_write_text(out / "rankings.jsonl", "".join(lines))
    if empty_categories:
        logger.warning("categories with no gallery photo (their queries get no result): %s", empty_categories)
    summary = {"name": embed_name, "k": k, "factory": factory, "queries": len(qrows), "gallery": len(grows),
               "empty_categories": empty_categories}
    atomic_write_json(out / "summary.json", summary)
    stage.complete({"topk_rows": "topk_rows.npy", "topk_scores": "topk_scores.npy", "rankings": "rankings.jsonl",
                    "indexes": "indexes", "summary": "summary.json"})
    return summary
