"""Which index searches a category's segments, when it is trained, and how its search is tuned.

The catalogue's ``index`` setting (``catalogue create --index``, stored in ``model.json``):

- ``Flat`` (default): exact search over float32 vectors, the paper's search; never trained.
- ``SQfp16``: exact search over float16 vectors (half the memory; scores to about 1e-3).
- ``auto``: exact (float16) while a category holds fewer than ``AUTO_MIN_PHOTOS`` photos, then
  ``IVF<nlist>,SQ8`` with nlist the power of two nearest sqrt(photos) (64 to 16384).
- any other FAISS factory string with an inner-product metric, e.g. ``IVF1024,SQ8``, ``IVF1024,PQ256``,
  ``HNSW32``, ``HNSW32,SQ8``: approximate once the category holds enough photos to train it
  (39 per IVF list and per PQ centroid, at least 1,000), exact before that.

Policy (``compact.py`` applies it): a category is trained on a seeded sample of its live vectors
(``TRAIN_SAMPLE_PER_LIST`` per IVF list, at least ``TRAIN_SAMPLE_MIN``, at most ``TRAIN_SAMPLE_MAX``), and
retrained when it has grown ``RETRAIN_GROWTH`` times since, or by half (``WEAK_RETRAIN_GROWTH``) when the
recall measured at its training fell below ``RECALL_TARGET`` (more photos, a better training; retraining on
the same ones would not help). At each training the recall@20 against exact search is measured on
``RECALL_QUERIES`` of the category's own photos used as queries, through the search path readers use
(candidates re-scored exactly from the stored vectors); the probe count (IVF ``nprobe``, HNSW ``efSearch``)
is doubled until the recall reaches the target, then the re-scored candidates (:func:`tune`). A segment of
at least ``INDEX_MIN_ROWS`` rows in a trained category gets an index (a copy of the trained empty index,
with its rows added); smaller ones are searched exactly.
"""
from __future__ import annotations

import math
import time
from typing import Dict, Optional, Tuple

import numpy as np

from ..errors import InputError
from ..search.exact import top_k
from ..search.faiss_lib import faiss
from .segments import RESCORE_FACTOR, LoadedSegment

EXACT_SETTINGS = ("Flat", "SQfp16")
AUTO = "auto"
AUTO_MIN_PHOTOS = 20_000
INDEX_MIN_ROWS = 4096
TRAIN_SAMPLE_PER_LIST = 64
TRAIN_SAMPLE_MIN = 16_384
TRAIN_SAMPLE_MAX = 131_072
RETRAIN_GROWTH = 4
WEAK_RETRAIN_GROWTH = 1.5   # a training below the recall target: retrained once the category grew by half
RECALL_TARGET = 0.95
RECALL_QUERIES = 200
RECALL_K = 20
RESCORE_MAX = 64   # candidates re-scored per result, at most (k = 20: 1,280 vectors read per query)
ADD_CHUNK_ROWS = 65_536


def check_setting(setting: str, dim: int) -> str:
    """The setting, or an InputError naming it when FAISS cannot build it for ``dim``."""
    if setting in EXACT_SETTINGS or setting == AUTO:
        return setting
    if "IDMap" in setting:
        raise InputError(f"--index {setting!r}: leave out IDMap (a segment's FAISS ids are its row numbers; the "
                         "photo ids are kept beside it)")
    try:
        index = faiss.index_factory(int(dim), setting, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise InputError(f"--index {setting!r}: FAISS cannot build it for dimension {dim} ({exc}); use Flat, "
                         "SQfp16, auto or a FAISS factory string such as IVF1024,SQ8 or HNSW32") from None
    if faiss.try_extract_index_ivf(index) is None and not isinstance(index, faiss.IndexHNSW) and index.is_trained:
        raise InputError(f"--index {setting!r}: an exact index; use Flat (float32) or SQfp16 (float16) instead")
    return setting


def factory_for(setting: str, photos: int) -> Optional[str]:
    """The FAISS factory a category of ``photos`` photos is searched with, or None for exact search."""
    if setting in EXACT_SETTINGS:
        return None
    if setting == AUTO:
        if photos < AUTO_MIN_PHOTOS:
            return None
        nlist = 2 ** min(14, max(6, round(math.log2(math.sqrt(photos)))))
        return f"IVF{nlist},SQ8"
    return setting if photos >= train_min(setting) else None


def _nlist(factory: str) -> int:
    """The IVF list count a factory string names (0 for another index)."""
    head = factory.split(",")[0]
    return int(head[3:]) if head.startswith("IVF") and head[3:].isdigit() else 0


def _pq_centroids(factory: str) -> int:
    """The centroids of each product quantizer a factory string names (2 ** bits; 0 without PQ)."""
    for part in factory.split(","):
        if part.startswith("PQ") and part[2:].split("x")[0].isdigit():
            bits = part[2:].split("x")[1] if "x" in part else "8"
            return 2 ** int(bits.rstrip("np")) if bits.rstrip("np").isdigit() else 256
    return 0


def train_min(factory: str) -> int:
    """Photos a category needs before ``factory`` is trained on them (FAISS's 39 per centroid)."""
    return max(1000, 39 * _nlist(factory), 39 * _pq_centroids(factory))


def train(factory: str, dim: int, vectors: np.ndarray, seed: int = 0) -> Tuple[faiss.Index, int]:
    """(the trained empty index, the photos it was trained on)."""
    index = faiss.index_factory(int(dim), factory, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(seed)
    size = min(len(vectors), max(TRAIN_SAMPLE_PER_LIST * _nlist(factory), TRAIN_SAMPLE_MIN), TRAIN_SAMPLE_MAX)
    sample = np.sort(rng.choice(len(vectors), size, replace=False))
    if hasattr(index, "do_polysemous_training"):
        index.do_polysemous_training = False   # orders codes for Hamming filtering; hits are re-scored instead
    if not index.is_trained:
        index.train(np.ascontiguousarray(vectors[sample], np.float32))
    return index, len(vectors)


def fill(trained: faiss.Index, vectors: np.ndarray) -> faiss.Index:
    """A copy of the trained empty index holding ``vectors`` (FAISS ids = row numbers)."""
    index = faiss.deserialize_index(faiss.serialize_index(trained))
    for start in range(0, len(vectors), ADD_CHUNK_ROWS):
        index.add(np.ascontiguousarray(vectors[start:start + ADD_CHUNK_ROWS], np.float32))
    return index


def _probe_name(index: faiss.Index) -> Optional[str]:
    if faiss.try_extract_index_ivf(index) is not None:
        return "nprobe"
    return "efSearch" if isinstance(index, faiss.IndexHNSW) else None


def tune(segment: LoadedSegment, seed: int = 0) -> Dict:
    """The search parameters that reach ``RECALL_TARGET`` on the segment (its own rows as queries) and the
    recall@20 against exact search with them: {"params", "recall_at_20", "recall_queries"}. The probe count
    doubles first; at its limit (every IVF list) the re-scored candidates double (a coarse code such as PQ
    ranks the true neighbours further down), up to ``RESCORE_MAX``."""
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(segment), min(RECALL_QUERIES, len(segment)), replace=False))
    queries = np.asarray(segment.vectors[rows], np.float32)
    exact = segment.ids[top_k(segment.vectors, queries, RECALL_K)[1]]
    name = _probe_name(segment.index)
    limit = faiss.try_extract_index_ivf(segment.index).nlist if name == "nprobe" else 2048
    params = {"rescore": RESCORE_FACTOR, **({} if name is None else {name: 1 if name == "nprobe" else 16})}
    while True:
        segment.params = dict(params)
        found = segment.search(queries, RECALL_K)[1]
        recall = float(np.mean([len(set(f) & set(e)) / len(e) for f, e in zip(found, exact)]))
        if recall >= RECALL_TARGET:
            break
        if name is not None and params[name] < limit:
            params[name] *= 2
        elif params["rescore"] < RESCORE_MAX:
            params["rescore"] *= 2
        else:
            break
    return {"params": params, "recall_at_20": round(recall, 4), "recall_queries": len(rows)}


def trained_index(factory: str, dim: int, ids: np.ndarray, vectors: np.ndarray
                  ) -> Tuple[faiss.Index, faiss.Index, Dict]:
    """Train ``factory`` on a category's live rows, fill a copy with them, tune it: (the trained empty index,
    the filled one, the training's record for the database: factory, trained_on, params, recall, seconds)."""
    started = time.perf_counter()
    trained, n = train(factory, dim, vectors)
    segment = LoadedSegment("tuning", ids, vectors, fill(trained, vectors))
    record = {"factory": factory, "trained_on": n, **tune(segment),
              "seconds": round(time.perf_counter() - started, 3)}
    return trained, segment.index, record


def needs_training(setting: str, photos: int, training: Optional[Dict]) -> Optional[str]:
    """The factory to (re)train the category with now, or None (see the policy above)."""
    factory = factory_for(setting, photos)
    if factory is None:
        return None
    if training is None:
        return factory
    grown = photos >= RETRAIN_GROWTH * training["trained_on"]
    recall = training.get("recall_at_20")
    weak = recall is not None and recall < RECALL_TARGET and photos >= WEAK_RETRAIN_GROWTH * training["trained_on"]
    return factory if grown or weak else None
