import json

import pytest

from detret.runs.atomic import atomic_path, atomic_write_json, atomic_write_text


def test_write_replaces_whole_file(tmp_path):
    target = tmp_path / "sub" / "a.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.txt"]


def test_failure_leaves_target_and_no_temporary(tmp_path):
    target = tmp_path / "a.npy"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            assert tmp.suffix == ".npy" and tmp.parent == tmp_path
            tmp.write_text("half-writ")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.npy"]


def test_json_is_canonical(tmp_path):
    atomic_write_json(tmp_path / "a.json", {"b": 1, "a": [1, 2]})
    atomic_write_json(tmp_path / "b.json", {"a": [1, 2], "b": 1})
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert json.loads((tmp_path / "a.json").read_text()) == {"a": [1, 2], "b": 1}


def test_written_files_get_umask_permissions_not_mkstemp_0600(tmp_path):
    import os
    import stat

    from detret.runs import atomic

    target = tmp_path / "a.json"
    atomic.atomic_write_json(target, {"x": 1})
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask


def test_the_rename_and_every_new_folder_are_flushed(tmp_path, monkeypatch):
    """A power cut after the function returns keeps the new file: the folder holding the rename is fsynced
    after it (before, only the file was), and so is the parent of each folder created on the way."""
    import os

    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", str(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    target = tmp_path / "new" / "deeper" / "a.json"
    atomic_write_json(target, {"a": 1})
    where = events.index(("replace", str(target)))
    assert ("fsync", str(target.parent)) in events[where + 1:]
    assert ("fsync", str(tmp_path)) in events[:where] and ("fsync", str(tmp_path / "new")) in events[:where]
    assert any(kind == "fsync" and path.endswith(".tmp.json") for kind, path in events[:where])
