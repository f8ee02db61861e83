"""detret.search.exact: the GEMM top-k against a full sort and against FAISS's own exact search."""
import numpy as np
import pytest

from detret.search.exact import merge_top_k, top_k
from detret.search.faiss_lib import faiss
from detret.search.index import build_index, search


def _unit(rng, n, d):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _sorted_reference(base, queries, k, dead=None):
    """Every score computed, sorted by (score descending, row ascending): the definition of the order."""
    s = queries.astype(np.float64) @ base.astype(np.float32).astype(np.float64).T
    if dead is not None:
        s[:, dead] = -np.inf
    rows = np.arange(len(base))
    return np.stack([np.lexsort((rows, -si))[:k] for si in s])


@pytest.mark.parametrize("chunk", [7, 65536])
def test_top_k_is_the_sorted_order_with_ties_dead_rows_and_float16(chunk):
    """Against every score computed in float64: the same rows up to float32 rounding (a swap only between scores
    closer than 1e-6), the returned order (score descending, row ascending on equal scores), dead rows never."""
    rng = np.random.default_rng(0)
    base = _unit(rng, 300, 16)
    base[100:110] = base[5]            # ties: equal rows, ordered by row
    queries = np.vstack([_unit(rng, 9, 16), base[5:6]])
    dead = np.zeros(len(base), bool)
    dead[[5, 103, 250]] = True
    for rows_dtype in (np.float32, np.float16):
        b = base.astype(rows_dtype)
        exact = queries.astype(np.float64) @ b.astype(np.float64).T
        for mask in (None, dead):
            scores, rows = top_k(b, queries, 20, mask, chunk_rows=chunk)
            reference = _sorted_reference(b, queries, 20, mask)
            ref_scores = np.take_along_axis(exact, reference, axis=1)
            swapped = rows != reference
            assert np.allclose(np.take_along_axis(exact, rows, axis=1)[swapped], ref_scores[swapped], atol=1e-6)
            assert np.allclose(scores, np.take_along_axis(exact, rows, axis=1), atol=1e-5)
            for s_row, r_row in zip(scores, rows):   # the order it promises, on the scores it returns
                assert all((a > c) or (a == c and x < y) for a, c, x, y in zip(s_row, s_row[1:], r_row, r_row[1:]))
            if mask is not None:
                assert not set(rows.ravel().tolist()) & {5, 103, 250}


def test_top_k_pads_past_the_end_and_merge_keeps_the_best():
    rng = np.random.default_rng(1)
    base, queries = _unit(rng, 5, 8), _unit(rng, 3, 8)
    scores, rows = top_k(base, queries, 8)
    assert (rows[:, 5:] == -1).all() and np.isneginf(scores[:, 5:]).all()
    merged_s, merged_ids = merge_top_k(np.hstack([scores, scores]), np.hstack([rows, rows + 100]), 4)
    assert np.array_equal(merged_ids[:, :2], np.stack([rows[:, 0], rows[:, 0] + 100], axis=1))


def test_flat_indexes_are_searched_by_the_gemm_and_agree_with_faiss():
    rng = np.random.default_rng(2)
    gallery, queries = _unit(rng, 2000, 64), _unit(rng, 50, 64)
    index = build_index(gallery, "Flat")
    assert type(index) is faiss.IndexFlat
    scores, ids = search(index, queries, 20)
    faiss_scores, faiss_ids = index.search(queries, 20)      # FAISS's own exact search, independent
    assert np.allclose(scores, faiss_scores, atol=1e-5)
    same = (ids == faiss_ids) | np.isclose(scores, faiss_scores, atol=1e-6)   # only ties may swap
    assert same.all()
