"""Crops and descriptors of new photos: data-parallel equals one process; a rerun reuses finished batches."""
from pathlib import Path

import numpy as np

from detret.catalogue import compute
from detret.catalogue.compute import compute_all
from detret.embed.artifact import read_descriptors
from detret.utils.device import DataParallel
from tests.helpers import copy_catalogue


def _items(pcfg, n=7):
    _, rows = read_descriptors(Path(pcfg.run_dir) / "embed-tri-crops", "gallery")
    images = Path(pcfg.data.street2shop.root) / "images"
    items = [(str(images / f"{r.photo_id:09d}.jpg"), r.category, None if i % 2 else r.box_xyxy)
             for i, r in enumerate(rows[:n])]
    return items + [(str(images / "missing.jpg"), "bags", None)]


def test_two_processes_compute_what_one_does(demo_catalogue, tmp_path):
    root, pcfg = demo_catalogue
    items = _items(pcfg)
    one = copy_catalogue(root, tmp_path / "one")
    records, desc, _ = compute_all(one, items, models=None, device="cpu", batch_size=3)
    two = copy_catalogue(root, tmp_path / "two")
    records2, desc2, _ = compute_all(two, items, models=None, device="cpu", batch_size=3,
                                     parallel=DataParallel(num_processes=2))
    assert records2 == records
    assert records[-1].reason == "missing file" and sum(r.reason is None for r in records) == len(items) - 1
    assert {r.rule for r in records[:-1]} >= {"given box"}
    assert desc.shape == desc2.shape == (len(items) - 1, desc.shape[1])
    assert np.allclose(desc, desc2, atol=1e-5)


def test_a_rerun_computes_only_the_batches_it_had_not_finished(demo_catalogue, tmp_path, monkeypatch):
    root, pcfg = demo_catalogue
    cat = copy_catalogue(root, tmp_path / "cat")
    items = _items(pcfg)
    first, desc, folder = compute_all(cat, items, models=None, device="cpu", batch_size=3)
    (folder / "000001.npz").unlink()  # as if killed before the second batch was written
    real, calls = compute.compute_batch, []

    def counting(models, batch):
        calls.append(len(batch))
        return real(models, batch)

    monkeypatch.setattr(compute, "compute_batch", counting)
    again, desc_again, _ = compute_all(cat, items, models=None, device="cpu", batch_size=3)
    assert calls == [3] and again == first and np.array_equal(desc, desc_again)
