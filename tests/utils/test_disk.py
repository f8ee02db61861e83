"""Free-space checks: a clear error before the work, naming the folder and the sizes."""
from collections import namedtuple

import numpy as np
import pytest

from detret.utils import disk
from detret.utils.disk import DiskSpaceError, require_free_space

Usage = namedtuple("Usage", "total used free")


def test_enough_and_not_enough(tmp_path, monkeypatch):
    require_free_space(tmp_path / "not" / "yet" / "made", 1024, "a test artifact")  # real disk, tiny need
    monkeypatch.setattr(disk.shutil, "disk_usage", lambda p: Usage(10 << 30, 10 << 30, 100 << 20))
    with pytest.raises(DiskSpaceError, match=r"run/embed-x: not enough disk space for 1,000 descriptors.*MiB free"):
        require_free_space(tmp_path / "run" / "embed-x", 200 << 20, "1,000 descriptors")


def test_search_refuses_before_writing(tmp_path, monkeypatch):
    from detret.config.pipeline import load_pipeline_config
    from detret.embed.artifact import Row, write_descriptors
    from detret.runs.stage import Stage
    from detret.search.stage import run_search

    folder = tmp_path / "run" / "embed-e"
    g = np.eye(4, dtype=np.float32)
    rows = [Row(i, i, "bags", "shop", None, "full", None) for i in range(4)]
    write_descriptors(folder, "gallery", g, rows)
    write_descriptors(folder, "queries", g[:2], [Row(9, 0, "bags", "street", 0, "ground_truth", None)] * 2)
    st = Stage(folder, "embed-e", config={}, inputs={})
    st.begin()
    st.complete({"gallery": "gallery.npy", "queries": "queries.npy"})
    pcfg = load_pipeline_config(None, [f"run_dir={tmp_path / 'run'}"])
    monkeypatch.setattr(disk.shutil, "disk_usage", lambda p: Usage(1 << 30, 1 << 30, 1 << 20))
    with pytest.raises(DiskSpaceError, match="search-e"):
        run_search(pcfg, "e", k=2, use_gpu=False)
    assert not (tmp_path / "run" / "search-e" / "rankings.jsonl").exists()
    monkeypatch.undo()
    assert run_search(pcfg, "e", k=2, use_gpu=False)["queries"] == 2
