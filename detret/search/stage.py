"""`detret search`: the top-k shop photos of each street query, within its category.

Writes ``<run_dir>/search-<name>/`` (``--protocol all``: ``search-<name>@all/``, one index of every shop
photo, no category filter; ``--rerank aqe|dba|diffusion``: ``search-<name>+<method>/``, the re-ranked
order of :mod:`detret.search.rerank` over exact scores, no index; the summary records the settings,
which ``detret eval <name>+<method>`` reads):

- ``topk_rows.npy`` int64 [Q, k]: gallery rows (of ``embed-<name>/gallery.npy``) in
  ranked order, -1 past the end of a small category; ``topk_scores.npy`` float32 [Q, k];
  row q is query row q of ``embed-<name>/queries.npy``;
- ``rankings.jsonl``: the same, readable: per query its photo, product, category, record and
  ``[[shop photo id, product id, score], ...]``; the product id of a result is the query's
  own when the photo shows it (a shop photo listed for several products of the category
  shows each), else the first product the photo is listed for;
- ``indexes/<category>.faiss`` (``faiss.write_index``) with ``indexes/index_meta.json``
  (factory string and gallery hash): reused by later runs while they match.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
from omegaconf import DictConfig

from ..config.choices import Protocol, check_choice
from ..embed.artifact import Row, read_descriptors, rows_by_category
from ..errors import InputError
from ..runs.atomic import atomic_path, atomic_write_json, atomic_write_text
from ..runs.layout import RERANKED, RunLayout
from ..runs.manifest import sha256_file
from ..runs.stage import Stage, require_fresh
from ..utils.disk import require_free_space
from ..utils.progress import progress
from .faiss_lib import faiss
from .index import build_index, for_search, search
from .rerank import PLAIN, Rerank, scorer, top_k

logger = logging.getLogger(__name__)

INDEX_DIR = "indexes"
RANKINGS_FILE = "rankings.jsonl"


def index_file_name(category: str) -> str:
    """``indexes/<this>``: the saved FAISS index of a category (a "/" in a name would make a folder)."""
    return category.replace("/", "_") + ".faiss"


def _category_index(gallery: np.ndarray, factory: str, path: Path, cached: bool):
    """The category's saved index when it matches (``cached``), else a new one, saved atomically."""
    if cached and path.is_file():
        return faiss.read_index(str(path))
    index = build_index(gallery, factory)
    with atomic_path(path) as tmp:
        faiss.write_index(index, str(tmp))
    return index


def gallery_groups(grows: List[Row], qrows: List[Row], protocol: str) -> List[Tuple[str, np.ndarray, np.ndarray]]:
    """(name, gallery rows, query rows) of each search: per category (Kiapour et al.'s protocol), or one
    group "all" of every shop photo and every query (Morelli et al.'s)."""
    if protocol == "all":
        return [("all", np.arange(len(grows), dtype=np.int64), np.arange(len(qrows), dtype=np.int64))]
    g_by_cat, q_by_cat = rows_by_category(grows), rows_by_category(qrows)
    return [(cat, np.array(g_by_cat.get(cat, []), np.int64), np.array(q_by_cat.get(cat, []), np.int64))
            for cat in sorted(set(g_by_cat) | set(q_by_cat))]


def search_groups(gallery: np.ndarray, queries: np.ndarray, groups, k: int, factory: str, use_gpu: bool,
                  index_dir: Path, cached: bool, rerank: Rerank) -> Tuple[np.ndarray, np.ndarray, List[str]]:
    """(top rows int64 [Q, k], top scores float32 [Q, k], groups with no gallery photo). Re-ranked: the
    re-ranker's keys (:mod:`detret.search.rerank`) over the exact scores, no FAISS index."""
    top_rows = np.full((len(queries), k), -1, np.int64)
    top_scores = np.full((len(queries), k), -np.inf, np.float32)
    empty = []
    for name, g_idx, q_idx in progress(groups, "searching", unit="gallery"):
        if len(g_idx) == 0:
            empty.append(name)
            continue
        if not len(q_idx):
            continue
        if rerank.method == PLAIN:
            index = _category_index(gallery[g_idx], factory, index_dir / index_file_name(name), cached)
            scores, local = search(for_search(index, use_gpu), queries[q_idx], k)
        else:
            chunks = [top_k(keys, k) for keys in scorer(rerank)(gallery[g_idx], queries[q_idx])]
            scores, local = np.concatenate([c[0] for c in chunks]), np.concatenate([c[1] for c in chunks])
        top_scores[q_idx] = scores
        top_rows[q_idx] = np.where(local >= 0, g_idx[np.clip(local, 0, None)], -1)
    return top_rows, top_scores, empty


def rankings_lines(qrows: List[Row], grows: List[Row], top_rows: np.ndarray, top_scores: np.ndarray) -> str:
    """``rankings.jsonl``: one line per query (see the module docstring)."""
    lines = []
    for qi, r in enumerate(qrows):
        results = [[grows[j].photo_id, r.product_id if r.product_id in grows[j].products else grows[j].product_id,
                    round(float(s), 6)] for j, s in zip(top_rows[qi], top_scores[qi]) if j >= 0]
        lines.append(json.dumps({"query_row": qi, "photo_id": r.photo_id, "product_id": r.product_id,
                                 "category": r.category, "record": r.record, "results": results}) + "\n")
    return "".join(lines)


def _write_rankings(out: Path, qrows: List[Row], grows: List[Row], top_rows: np.ndarray,
                    top_scores: np.ndarray) -> None:
    with atomic_path(out / "topk_rows.npy") as tmp:
        np.save(tmp, top_rows)
    with atomic_path(out / "topk_scores.npy") as tmp:
        np.save(tmp, top_scores)
    atomic_write_text(out / RANKINGS_FILE, rankings_lines(qrows, grows, top_rows, top_scores))


def _stage_config(k: int, factory: str, protocol: str, rerank: Rerank) -> Dict:
    """The search's settings, as its manifest records them."""
    return {"k": k, "factory": factory, "protocol": protocol, "rerank": rerank.settings()}


def run_search(pcfg: DictConfig, embed_name: str, *, k: int = 50, factory: str = "Flat", use_gpu: bool = True,
               protocol: str = "category", rerank: Rerank = Rerank(), force: bool = False,
               command: Optional[str] = None) -> Dict:
    """The stage: ``search-<name>`` (``search-<name>+<method>`` re-ranked, ``...@all`` for the protocol all)."""
    if k < 1:
        raise InputError(f"k must be at least 1, got {k}")
    check_choice(protocol, Protocol, "protocol")
    layout = RunLayout(pcfg.run_dir)
    name = embed_name if rerank.method == PLAIN else f"{embed_name}{RERANKED}{rerank.method}"
    embed_dir, out = layout.embed(embed_name), layout.search(name, protocol)
    require_fresh(embed_dir, f"the descriptors '{embed_name}' (detret embed)")
    inputs = {"gallery": embed_dir / "gallery.npy", "queries": embed_dir / "queries.npy",
              "gallery_rows": embed_dir / "gallery_rows.jsonl", "query_rows": embed_dir / "queries_rows.jsonl"}
    stage = Stage(out, out.name, config=_stage_config(k, factory, protocol, rerank), inputs=inputs,
                  command=command, pipeline_config=pcfg)
    reused = stage.reuse_or_begin(force=force)
    if reused is not None:
        return reused
    gallery, grows = read_descriptors(embed_dir, "gallery")
    queries, qrows = read_descriptors(embed_dir, "queries")
    if gallery.shape[1] != queries.shape[1]:
        raise InputError(f"{embed_dir}: gallery dimension {gallery.shape[1]} != query dimension {queries.shape[1]}")
    # the indexes (exact: a copy of the gallery) and the top-k arrays
    require_free_space(out, gallery.nbytes + queries.shape[0] * k * 12, "the FAISS indexes and rankings")
    meta_path = out / INDEX_DIR / "index_meta.json"
    meta = {"factory": factory, "gallery_sha256": sha256_file(embed_dir / "gallery.npy")}
    cached = meta_path.is_file() and json.loads(meta_path.read_text()) == meta
    top_rows, top_scores, empty = search_groups(gallery, queries, gallery_groups(grows, qrows, protocol), k,
                                                factory, use_gpu, out / INDEX_DIR, cached, rerank)
    outputs = {"topk_rows": "topk_rows.npy", "topk_scores": "topk_scores.npy", "rankings": RANKINGS_FILE}
    if rerank.method == PLAIN:
        atomic_write_json(meta_path, meta)
        outputs["indexes"] = INDEX_DIR
    _write_rankings(out, qrows, grows, top_rows, top_scores)
    if empty:
        logger.warning("categories with no gallery photo (their queries get no result): %s", empty)
    summary = {"name": name, "folder": out.name, "descriptors": embed_name, "k": k, "factory": factory,
               "protocol": protocol, "rerank": rerank.settings(), "queries": len(qrows), "gallery": len(grows),
               "empty_categories": empty}
    return stage.finish(summary, outputs)
