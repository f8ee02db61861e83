"""detret whiten: learned whitening (Lw) and PCA whitening against cnnimageretrieval-pytorch's formulas written
out independently, their defining properties, and a whitened run used by a catalogue."""
from pathlib import Path

import numpy as np
import pytest

from detret.embed.artifact import read_descriptors
from detret.embed.whitening import apply_whitening, learn_lw, learn_pca, read_whitening


def _cirtorch_whitenlearn(X, qidxs, pidxs):
    """cnnimageretrieval-pytorch's whitenlearn (cirtorch/utils/whiten.py), columns as descriptors [D, N]."""
    m = X[:, qidxs].mean(axis=1, keepdims=True)
    df = X[:, qidxs] - X[:, pidxs]
    S = np.dot(df, df.T) / df.shape[1]
    P = np.linalg.inv(np.linalg.cholesky(S))
    df = np.dot(P, X - m)
    D = np.dot(df, df.T)
    eigval, eigvec = np.linalg.eig(D)
    order = eigval.argsort()[::-1]
    eigvec = eigvec[:, order]
    return m, np.dot(eigvec.T, P)


def _pairs(rng, n=400, d=12):
    products = rng.standard_normal((n, d))
    street = products + 0.3 * rng.standard_normal((n, d))
    shop = products + 0.3 * rng.standard_normal((n, d))
    return street, shop


def test_lw_is_cirtorchs_whitenlearn():
    street, shop = _pairs(np.random.default_rng(0))
    X = np.vstack([street, shop]).T
    n = len(street)
    m_ref, p_ref = _cirtorch_whitenlearn(X, np.arange(n), np.arange(n, 2 * n))
    mean, projection = learn_lw(street, shop, ridge=0.0)
    assert np.allclose(mean, m_ref[:, 0], atol=1e-5)
    # eigenvectors are defined up to sign: compare what the projection does to distances
    assert np.allclose(projection.T @ projection, p_ref.T @ p_ref, rtol=1e-3, atol=1e-4)
    assert np.allclose(np.abs(projection), np.abs(p_ref), rtol=1e-3, atol=1e-4)


def test_lw_makes_the_pairs_differences_white_and_pca_the_data():
    street, shop = _pairs(np.random.default_rng(1))
    mean, projection = learn_lw(street, shop, ridge=0.0)
    diff = (street - shop) @ projection.T
    assert np.allclose(diff.T @ diff / len(diff), np.eye(street.shape[1]), atol=1e-4)
    x = np.vstack([street, shop])
    mean, projection = learn_pca(x, ridge=0.0)
    y = (x - mean) @ projection.T
    assert np.allclose(y.T @ y / len(y), np.eye(x.shape[1]), atol=1e-4)
    reduced = apply_whitening(x, mean, projection[:4])
    assert reduced.shape == (len(x), 4) and np.allclose(np.linalg.norm(reduced, axis=1), 1, atol=1e-5)


def test_a_ridge_gives_a_projection_from_fewer_pairs_than_dimensions():
    street, shop = _pairs(np.random.default_rng(2), n=5, d=12)
    with pytest.raises(np.linalg.LinAlgError):
        learn_lw(street, shop, ridge=0.0)
    mean, projection = learn_lw(street, shop, ridge=0.1)
    assert np.isfinite(projection).all()


def test_a_whitened_run_serves_a_catalogue(demo_quick, tmp_path):
    """The demo's whitened run (the paper's recipe whitens Crops): its descriptors are the source's whitened
    with the stored projection; a catalogue made from it holds them, copies the whitening with the models and
    refuses a changed one."""
    from detret.catalogue.binding import BoundModels, ModelMismatch, read_card
    from detret.catalogue.create import create_catalogue
    from detret.catalogue.store import Catalogue
    from detret.catalogue.vectors import load_vectors
    from detret.config.pipeline import load_pipeline_config

    _, result = demo_quick
    run_dir = Path(result["run_dir"])
    source, rows = read_descriptors(run_dir / "embed-Crops", "gallery")
    whitened, wrows = read_descriptors(run_dir / "embed-Crops-lw", "gallery")
    mean, projection = read_whitening(run_dir / "embed-Crops-lw" / "whitening.npz")
    assert wrows == rows and np.allclose(whitened, apply_whitening(source, mean, projection), atol=1e-6)
    assert whitened.shape[1] == source.shape[1] // 8
    pcfg = load_pipeline_config(result["config"], ["device=cpu"])
    root = tmp_path / "cat"
    create_catalogue(pcfg, root, "Crops-lw", import_gallery=True)
    card = read_card(root)
    assert card.dim == whitened.shape[1] and card.descriptor.whiten is not None
    cat = Catalogue.open(root)
    reader = load_vectors(cat.layout, cat.conn)
    photo_of = {r["photo_id"]: int(r["source"].split(":")[1]) for r in cat.conn.execute("SELECT * FROM photos")}
    cat.close()
    row_of = {r.photo_id: i for i, r in enumerate(rows)}
    for category in reader.segments:
        for pid in reader.live_ids(category)[:3]:
            assert np.allclose(reader.vector(category, int(pid)), whitened[row_of[photo_of[int(pid)]]], atol=1e-6)
    stored = root / card.descriptor.whiten["checkpoint"]
    assert stored.suffix == ".npz" and stored.is_file()
    np.savez(stored, mean=mean, projection=projection * 2, method=np.array("lw"))
    with pytest.raises(ModelMismatch):
        BoundModels(card, root, "cpu")
