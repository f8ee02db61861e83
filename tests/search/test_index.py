"""FAISS per-category search equals a NumPy brute-force search, ties included."""
import numpy as np
import pytest

from detret.retrieval.metrics import ranking
from detret.search.index import build_index, search


def _normed(rng, n, d):
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_flat_equals_brute_force():
    rng = np.random.default_rng(0)
    g, q = _normed(rng, 300, 32), _normed(rng, 40, 32)
    scores, ids = search(build_index(g), q, 20)
    brute = q @ g.T
    for i in range(len(q)):
        order = ranking(brute[i])[:20]
        assert np.array_equal(ids[i], order)
        assert np.allclose(scores[i], brute[i][order], atol=1e-5)


def test_ties_are_broken_by_gallery_row_and_small_galleries_pad():
    g = np.array([[1, 0], [0, 1], [1, 0], [1, 0]], np.float32)
    scores, ids = search(build_index(g), np.array([[1, 0]], np.float32), 6)
    assert ids[0].tolist() == [0, 2, 3, 1, -1, -1]
    assert np.isneginf(scores[0, 4:]).all()


def test_factory_strings_and_bad_ones():
    rng = np.random.default_rng(1)
    g, q = _normed(rng, 500, 16), _normed(rng, 10, 16)
    exact = search(build_index(g), q, 10)[1]
    approx = search(build_index(g, "HNSW32"), q, 10)[1]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, approx)])
    assert recall > 0.9
    sq = search(build_index(g, "SQ8"), q, 10)[1]
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, sq)]) > 0.8
    with pytest.raises(ValueError, match="cannot build index 'Nonsense'"):
        build_index(g, "Nonsense")
