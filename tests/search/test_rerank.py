"""Re-ranking (alpha-QE, alpha-DBA, diffusion): against dense brute-force implementations written from the papers."""
import numpy as np
import pytest

from detret.embed.artifact import Row
from detret.errors import InputError
from detret.evaluate.protocol import category_ranks
from detret.search.rerank import DIFFUSED_KEY_BASE, RERANKERS, Rerank, scorer, split_reranked, top_k


def _unit(rng, n, d=12):
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _keys(settings, gallery, queries):
    return np.concatenate(list(scorer(settings, chunk=7)(gallery, queries)))


def _dense_order(row):
    return sorted(range(len(row)), key=lambda j: (-row[j], j))


def _dense_average(base, sims_row, neighbours, alpha, own=None):
    v = (own.astype(np.float64).copy() if own is not None else np.zeros(base.shape[1]))
    for j in neighbours:
        v += max(sims_row[j], 0.0) ** alpha * base[j]
    return v / np.linalg.norm(v)


def test_alpha_query_expansion_equals_the_formula_by_hand():
    rng = np.random.default_rng(0)
    g, q = _unit(rng, 60), _unit(rng, 9)
    settings = Rerank(method="aqe", alpha=3.0, k=5)
    sims = q.astype(np.float64) @ g.T.astype(np.float64)
    for i in range(len(q)):
        expanded = _dense_average(g, sims[i], _dense_order(sims[i])[:5], 3.0, own=q[i])
        np.testing.assert_allclose(_keys(settings, g, q)[i], g @ expanded, atol=1e-5)


def test_alpha_database_augmentation_equals_the_formula_by_hand():
    rng = np.random.default_rng(1)
    g, q = _unit(rng, 50), _unit(rng, 6)
    settings = Rerank(method="dba", alpha=2.0, k=4)
    sims = g.astype(np.float64) @ g.T.astype(np.float64)
    augmented = np.stack([_dense_average(g, sims[i], [j for j in _dense_order(sims[i]) if j != i][:4], 2.0, own=g[i])
                          for i in range(len(g))])
    np.testing.assert_allclose(_keys(settings, g, q), q @ augmented.T, atol=1e-5)


def _dense_diffusion_offline(g, s: Rerank):
    """Yang et al.'s offline diffusion with dense matrices and exact solves."""
    m = len(g)
    sims = g.astype(np.float64) @ g.T.astype(np.float64)
    others = [[j for j in _dense_order(sims[i]) if j != i] for i in range(m)]
    near = np.zeros((m, m), bool)
    for i in range(m):
        near[i, others[i][:s.kd]] = True
    affinity = np.where(near & near.T, np.maximum(sims, 0) ** s.gamma, 0.0)
    np.fill_diagonal(affinity, 0.0)
    d = affinity.sum(axis=1) + 1e-12
    laplacian = np.eye(m) - s.diffusion_alpha * affinity / np.sqrt(np.outer(d, d))
    offline = np.zeros((m, m))
    for i in range(m):
        ids = [i] + others[i][:s.truncation - 1]
        e = np.zeros(len(ids))
        e[0] = 1
        offline[i, ids] = np.linalg.solve(laplacian[np.ix_(ids, ids)], e)
    return offline


def test_diffusion_ranks_as_a_dense_exact_implementation():
    rng = np.random.default_rng(2)
    # clustered gallery: diffusion has manifolds to follow
    centres = _unit(rng, 5)
    g = centres[rng.integers(0, 5, 70)] + 0.35 * rng.normal(size=(70, 12))
    g = (g / np.linalg.norm(g, axis=1, keepdims=True)).astype(np.float32)
    q = _unit(rng, 8)
    s = Rerank(method="diffusion", truncation=30, kd=6, kq=4, iterations=400)
    offline = _dense_diffusion_offline(g, s)
    keys = _keys(s, g, q)
    cosine = q @ g.T
    for i in range(len(q)):
        nearest = _dense_order(cosine[i])[:4]
        f = sum(max(cosine[i][j], 0) ** 3 * offline[j] for j in nearest)
        expected = [j for j in _dense_order(f) if f[j] > 0][:30]
        diffused = [j for j in _dense_order(keys[i]) if keys[i][j] > DIFFUSED_KEY_BASE]
        assert diffused == expected
        rest = np.setdiff1d(np.arange(len(g)), expected)
        np.testing.assert_allclose(keys[i][rest], cosine[i][rest], atol=1e-6)  # then cosine order


def test_a_product_with_a_single_photo_far_from_all_others_is_still_found_first():
    rng = np.random.default_rng(3)
    g = _unit(rng, 40, 12)
    g[:, 11] = 0
    g = g / np.linalg.norm(g, axis=1, keepdims=True)
    lone = np.zeros((1, 12), np.float32)
    lone[0, 11] = 1.0                             # its own direction: no mutual neighbour in the graph
    g = np.vstack([g, lone]).astype(np.float32)
    q = lone + 0.05 * rng.normal(size=(1, 12)).astype(np.float32)
    q /= np.linalg.norm(q)
    grows = [Row(i, i, "a", "shop", None, "fallback", None) for i in range(len(g))]
    qrows = [Row(1000, len(g) - 1, "a", "street", 0, "ground_truth", None)]
    for method in RERANKERS.names():
        settings = Rerank(method=method, k=3, kd=5, kq=3, truncation=20)
        ranks = category_ranks(g, grows, q, qrows, scorer=scorer(settings))["a"]["ranks"]
        assert list(ranks[0]) == [1], method


def test_top_k_orders_by_key_then_column_and_pads_short_rows():
    keys = np.array([[0.5, 0.9, 0.5, 0.1]], np.float32)
    values, cols = top_k(keys, 6)
    assert cols.tolist() == [[1, 0, 2, 3, -1, -1]]
    assert values[0, 4] == -np.inf


def test_bad_settings_are_named():
    with pytest.raises(InputError, match="re-ranking 'krnn' is not one of none, aqe, dba, diffusion"):
        Rerank(method="krnn")
    with pytest.raises(InputError, match="truncation must be at least 1"):
        Rerank(method="diffusion", truncation=0)
    assert Rerank(method="aqe").settings() == {"method": "aqe", "alpha": 3.0, "k": 10}


def test_a_re_ranked_run_name_ends_in_a_re_ranking_method():
    assert split_reranked("tri-crops+aqe") == ("tri-crops", "aqe")
    assert split_reranked("tri-crops+ap-crops+diffusion") == ("tri-crops+ap-crops", "diffusion")
    assert split_reranked("tri-crops+ap-crops") == ("tri-crops+ap-crops", None)  # an ensemble's default name
    assert split_reranked("Crops") == ("Crops", None) and split_reranked("+dba") == ("+dba", None)
