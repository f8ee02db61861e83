"""Whitening as pure functions (Radenovic et al., TPAMI 2018): learned from matching pairs (``lw``, cirtorch's
``whitenlearn``) or by PCA (``pcawhitenlearn``), applied as normalise(P[:d'] (x - m)), read from a
``whitening.npz``. The stage that learns one for a descriptor run is :mod:`detret.embed.whiten`; the
descriptor tree applies it (:mod:`detret.embed.describer`)."""
from __future__ import annotations

from pathlib import Path
from typing import Tuple

import numpy as np


def _sorted_eigh(c: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    values, vectors = np.linalg.eigh(c)
    order = np.argsort(values)[::-1]
    return values[order], vectors[:, order]


def _ridged(c: np.ndarray, ridge: float) -> np.ndarray:
    return c + ridge * max(float(np.trace(c)) / len(c), 1e-12) * np.eye(len(c))


def learn_lw(street: np.ndarray, shop: np.ndarray, ridge: float = 0.1) -> Tuple[np.ndarray, np.ndarray]:
    """(mean [D], projection [D, D]) of learned whitening from matching pairs street[i] <-> shop[i] [n, D]."""
    x_q, x_p = street.astype(np.float64), shop.astype(np.float64)
    mean = x_q.mean(axis=0)
    diff = x_q - x_p
    s = _ridged(diff.T @ diff / len(diff), ridge)
    p1 = np.linalg.inv(np.linalg.cholesky(s))
    both = (np.vstack([x_q, x_p]) - mean) @ p1.T
    _, vectors = _sorted_eigh(both.T @ both)
    return mean.astype(np.float32), (vectors.T @ p1).astype(np.float32)


def learn_pca(x: np.ndarray, ridge: float = 0.1) -> Tuple[np.ndarray, np.ndarray]:
    """(mean [D], projection [D, D]) of PCA whitening of the rows of x [n, D]."""
    x = x.astype(np.float64)
    mean = x.mean(axis=0)
    centred = x - mean
    cov = centred.T @ centred / len(x)
    values, vectors = _sorted_eigh(cov)
    values = values + ridge * max(float(values.mean()), 1e-12)
    return mean.astype(np.float32), (np.diag(values ** -0.5) @ vectors.T).astype(np.float32)


def apply_whitening(x: np.ndarray, mean: np.ndarray, projection: np.ndarray) -> np.ndarray:
    """normalise((x - mean) @ projection^T): [n, D] -> [n, d'] float32, L2-normalised."""
    y = (np.asarray(x, np.float32) - mean) @ projection.T
    return (y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def read_whitening(path: Path) -> Tuple[np.ndarray, np.ndarray]:
    with np.load(path) as z:
        return z["mean"].astype(np.float32), z["projection"].astype(np.float32)
