"""Re-ranking a gallery's ranking: alpha query expansion, alpha database-side augmentation, diffusion.

Each method is fitted on one gallery (a category's shop photos, or all of them) and then gives, for a
chunk of queries, *ranking keys* [q, M]: sorting a row by (key descending, gallery row ascending) is the
re-ranked order, the order every ranking in detret uses. So :func:`detret.evaluate.protocol.category_ranks`
(mAP over the whole gallery) and ``detret search`` (top k) use a re-ranker as they use plain scores.

- ``aqe``, alpha query expansion (Radenovic et al. 2018, alpha-QE): the query becomes
  normalise(q + sum_i max(s_i, 0)^alpha g_i) over its ``k`` nearest gallery photos g_i (s_i = q . g_i),
  and is searched again. Keys: the new cosine.
- ``dba``, alpha database-side augmentation (the same paper): every gallery descriptor becomes
  normalise(g + sum_i max(s_i, 0)^alpha g_i) over its ``k`` nearest *other* gallery photos; queries are
  searched, unchanged, against the augmented gallery. Keys: the new cosine.
- ``diffusion`` (Iscen et al. 2017, in the offline/online form of Yang et al. 2019 whose code Ibrahim
  et al. ran, fyang93/diffusion; their truncation 1,000): offline, the gallery's mutual kNN graph
  (``kd`` = 50 neighbours, affinity max(s, 0)^gamma, gamma = 3), S = D^-1/2 A D^-1/2, and for every
  gallery photo i the diffusion (I - alpha S) f = e_i restricted to its ``truncation`` nearest photos,
  solved by conjugate gradients (20 iterations, as theirs); online, a query's f is the sum of the rows of
  its ``kq`` = 10 nearest photos weighted by max(s, 0)^gamma. Keys: the photos that f reaches (f > 0),
  at most ``truncation``, come first in f's order (keys in (2, 3]); every other photo follows in cosine
  order (keys = cosine, in [-1, 1]), so mAP over the whole gallery stays defined.

Memory stays bounded: nearest neighbours are searched in chunks (:mod:`detret.search.knn`), the graph
and the offline diffusion are sparse ([M, kd] and [M, truncation] entries), never a dense [M, M].

A product with a single shop photo: alpha-QE and alpha-DBA only average descriptors, so a lone positive
stays reachable exactly as before (it moves only as far as the averaging moves it). In the diffusion
graph a photo with no mutual neighbour is isolated: its offline row is itself alone (f = e_i), and a query
reaches it through its own kq nearest photos; unlike k-reciprocal re-ranking, nothing requires the
positive to have neighbours of its own (tested).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
import scipy.sparse as sparse
from scipy.sparse.linalg import cg

from ..errors import InputError
from ..registry import Registry
from ..runs.layout import RERANKED, RunLayout
from .knn import knn, self_first_knn

PLAIN = "none"  # the method of a search that is not re-ranked: exact cosine scores
DIFFUSED_KEY_BASE = 2.0  # diffusion's re-ranked photos get keys in (2, 3]; cosines lie in [-1, 1]


@dataclass(frozen=True)
class Rerank:
    """A re-ranking and its settings (the names are the CLI's options)."""
    method: str = PLAIN
    alpha: float = 3.0          # aqe, dba: the weights' exponent
    k: int = 10                 # aqe, dba: neighbours averaged
    truncation: int = 1000      # diffusion: photos re-ranked per query (Ibrahim et al.'s 1,000)
    kd: int = 50                # diffusion: neighbours of the gallery graph
    kq: int = 10                # diffusion: a query's nearest photos that start it
    gamma: float = 3.0          # diffusion: affinity = max(s, 0)^gamma
    diffusion_alpha: float = 0.99
    iterations: int = 20        # diffusion: conjugate-gradient iterations per gallery photo

    def __post_init__(self) -> None:
        RERANKERS.get(self.method, "re-ranking")
        for name in ("k", "truncation", "kd", "kq", "iterations"):
            if getattr(self, name) < 1:
                raise InputError(f"re-ranking {name} must be at least 1, got {getattr(self, name)}")
        if self.alpha < 0 or self.gamma < 0 or not 0 < self.diffusion_alpha < 1:
            raise InputError(f"re-ranking needs alpha >= 0, gamma >= 0 and 0 < diffusion_alpha < 1, got {self}")

    def settings(self) -> Dict:
        """The settings the method reads (what a run records)."""
        used = RERANKERS.get(self.method).settings
        return {"method": self.method, **{name: value for name, value in asdict(self).items() if name in used}}


def _normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def _weighted_sum(base: np.ndarray, scores: np.ndarray, rows: np.ndarray, alpha: float) -> np.ndarray:
    """sum_j max(scores[:, j], 0)^alpha base[rows[:, j]] per row: [n, D] (not normalised)."""
    weights = np.maximum(scores, 0.0) ** alpha
    return np.einsum("nk,nkd->nd", weights, base[rows])


def expand_queries(gallery: np.ndarray, queries: np.ndarray, alpha: float, k: int) -> np.ndarray:
    """alpha-QE: each query averaged with its k nearest gallery photos (itself weighted 1)."""
    scores, rows = knn(gallery, queries, k)
    return _normalise(queries + _weighted_sum(gallery, scores, rows, alpha))


def augment_database(gallery: np.ndarray, alpha: float, k: int, chunk: int = 4096) -> np.ndarray:
    """alpha-DBA: each gallery photo averaged with its k nearest other photos (itself weighted 1)."""
    out = np.empty_like(gallery, dtype=np.float32)
    for start in range(0, len(gallery), chunk):
        scores, rows = self_first_knn(gallery, k, start=start, stop=min(start + chunk, len(gallery)))
        out[start:start + chunk] = _normalise(_weighted_sum(gallery, scores, rows, alpha))  # rows: itself first
    return out


def normalised_affinity(gallery: np.ndarray, kd: int, gamma: float) -> sparse.csr_matrix:
    """S = D^-1/2 A D^-1/2 of the mutual kNN graph: A[i, j] = max(s_ij, 0)^gamma when j is among i's kd
    nearest other photos and i among j's; 0 on the diagonal. Sparse [M, M] with at most M x kd entries."""
    m = len(gallery)
    scores, rows = self_first_knn(gallery, kd)
    scores, rows = scores[:, 1:], rows[:, 1:]  # the others
    near = sparse.csr_matrix((np.ones(rows.size, np.float32), (np.repeat(np.arange(m), rows.shape[1]),
                                                                 rows.ravel())), shape=(m, m))
    weights = sparse.csr_matrix((np.maximum(scores, 0.0).ravel() ** gamma,
                                 (np.repeat(np.arange(m), rows.shape[1]), rows.ravel())), shape=(m, m))
    affinity = weights.multiply(near.multiply(near.T)).tocsr()  # mutual neighbours only
    degrees = np.asarray(affinity.sum(axis=1)).ravel() + 1e-12
    scale = sparse.diags(degrees ** -0.5)
    return (scale @ affinity @ scale).tocsr()


def offline_diffusion(gallery: np.ndarray, settings: Rerank, chunk: int = 4096) -> sparse.csr_matrix:
    """Row i: the diffusion from photo i over its ``truncation`` nearest photos (sparse [M, M], at most
    truncation entries per row): (I - alpha S)[T_i, T_i] f = e_i by conjugate gradients."""
    m = len(gallery)
    laplacian = (sparse.identity(m, format="csr") - settings.diffusion_alpha
                 * normalised_affinity(gallery, settings.kd, settings.gamma)).tocsr()
    width = min(settings.truncation, m)  # every row holds itself and its width - 1 nearest others
    data = np.empty((m, width), np.float32)
    cols = np.empty((m, width), np.int64)
    for start in range(0, m, chunk):
        _, truncated = self_first_knn(gallery, width - 1, start=start, stop=min(start + chunk, m))
        cols[start:start + len(truncated)] = truncated
        for i, ids in enumerate(truncated, start=start):  # ids[0] is the photo itself
            start_vector = np.zeros(len(ids))
            start_vector[0] = 1.0
            data[i], _ = cg(laplacian[ids][:, ids], start_vector, rtol=1e-6, maxiter=settings.iterations)
    return sparse.csr_matrix((data.ravel(), cols.ravel(), np.arange(0, m * width + 1, width)), shape=(m, m))


def nearest_columns(row: np.ndarray, k: int) -> np.ndarray:
    """The columns of the k highest values of ``row``, by (value descending, column ascending)."""
    if k >= len(row):
        return np.lexsort((np.arange(len(row)), -row))
    threshold = np.partition(row, len(row) - k)[len(row) - k]
    candidates = np.flatnonzero(row >= threshold)  # ties at the threshold included, then cut in order
    return candidates[np.lexsort((candidates, -row[candidates]))][:k]


def diffusion_keys(gallery: np.ndarray, offline: sparse.csr_matrix, queries: np.ndarray, settings: Rerank
                   ) -> np.ndarray:
    """Ranking keys [q, M] of the queries (see the module docstring)."""
    keys = (queries @ gallery.T).astype(np.float32)
    for n in range(len(keys)):
        cosine = keys[n].copy()
        nearest = nearest_columns(cosine, settings.kq)
        weights = np.maximum(cosine[nearest], 0.0) ** settings.gamma
        f = np.asarray(offline[nearest].T @ weights).ravel()
        reached = np.flatnonzero(f > 0)
        order = reached[np.lexsort((reached, -f[reached]))][:settings.truncation]
        keys[n, order] = DIFFUSED_KEY_BASE + (len(order) - np.arange(len(order))) / max(len(order), 1)
    return keys


Keys = Callable[[np.ndarray], np.ndarray]  # queries [q, D] -> ranking keys [q, M]


@dataclass(frozen=True)
class RerankerEntry:
    """A re-ranking: ``fit(settings, gallery [M, D] float32) -> keys`` (see the module docstring);
    ``settings``: the :class:`Rerank` fields it reads (what a run records)."""
    name: str
    fit: Callable[[Rerank, np.ndarray], Keys]
    settings: Tuple[str, ...]
    summary: str


def _plain(settings: Rerank, gallery: np.ndarray) -> Keys:
    return lambda queries: queries @ gallery.T


def _aqe(settings: Rerank, gallery: np.ndarray) -> Keys:
    if not len(gallery):
        return _plain(settings, gallery)
    return lambda queries: expand_queries(gallery, queries, settings.alpha, settings.k) @ gallery.T


def _dba(settings: Rerank, gallery: np.ndarray) -> Keys:
    return _plain(settings, augment_database(gallery, settings.alpha, settings.k))


def _diffusion(settings: Rerank, gallery: np.ndarray) -> Keys:
    if not len(gallery):
        return _plain(settings, gallery)
    offline = offline_diffusion(gallery, settings)
    return lambda queries: diffusion_keys(gallery, offline, queries, settings)


RERANKERS: Registry[RerankerEntry] = Registry("re-ranking")
RERANKERS.register(RerankerEntry(PLAIN, _plain, (), "no re-ranking: exact cosine scores"))
RERANKERS.register(RerankerEntry("aqe", _aqe, ("alpha", "k"), "alpha query expansion (Radenovic et al.)"))
RERANKERS.register(RerankerEntry("dba", _dba, ("alpha", "k"), "alpha database-side augmentation (Radenovic et al.)"))
RERANKERS.register(RerankerEntry("diffusion", _diffusion,
                                 ("truncation", "kd", "kq", "gamma", "diffusion_alpha", "iterations"),
                                 "diffusion on the gallery's kNN graph (Iscen et al., Yang et al.)"))


def fit(settings: Rerank, gallery: np.ndarray) -> Keys:
    """The re-ranker of `settings` fitted on one gallery: the keys of query chunks (sort each row by
    (key descending, row ascending) for the re-ranked order)."""
    return RERANKERS.get(settings.method, "re-ranking").fit(settings, np.ascontiguousarray(gallery, np.float32))


def split_reranked(name: str) -> Tuple[str, Optional[str]]:
    """(descriptor run, re-ranking method or None) of a run name: "tri-crops+aqe" -> ("tri-crops", "aqe").
    Only a re-ranking method after the last "+" makes a re-ranked run: an ensemble embedded without --name
    is called "tri-crops+ap-crops" and is a descriptor run."""
    base, sep, method = name.rpartition(RERANKED)
    reranked = sep and base and method in RERANKERS and method != PLAIN
    return (base, method) if reranked else (name, None)


def reranked_runs(layout: RunLayout, protocol: str = "category") -> List[str]:
    """Names of the re-ranked runs searched under ``protocol`` (search-<name>+<method>[@all])."""
    return [n for n in layout.search_runs(protocol) if split_reranked(n)[1]]


def scorer(settings: Rerank, chunk: int = 256):
    """A :data:`detret.evaluate.protocol.Scorer`: fit on the gallery, then the keys of each query chunk."""
    def scores(gallery: np.ndarray, queries: np.ndarray) -> Iterator[np.ndarray]:
        keys = fit(settings, gallery)
        for start in range(0, len(queries), chunk):
            yield keys(queries[start:start + chunk])
    return scores


def top_k(keys: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
    """(keys [q, k], columns [q, k]) of each row's k highest keys, by (key descending, column ascending);
    -1 / -inf past the end of a short row."""
    out_cols = np.full((len(keys), k), -1, np.int64)
    out_keys = np.full((len(keys), k), -np.inf, np.float32)
    for i, row in enumerate(keys):
        order = nearest_columns(row, k)
        out_cols[i, :len(order)] = order
        out_keys[i, :len(order)] = row[order]
    return out_keys, out_cols
