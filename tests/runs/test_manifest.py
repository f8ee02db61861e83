import hashlib
import json

import pytest

from detret.runs.manifest import (
    MANIFEST_NAME,
    Manifest,
    changed_entries,
    fingerprint,
    package_versions,
    read_manifest,
    write_manifest,
)


def test_file_fingerprint_is_content_sha256(tmp_path):
    f = tmp_path / "x.bin"
    data = bytes(range(256)) * 5000  # larger than one hashing chunk
    f.write_bytes(data)
    fp = fingerprint(f)
    assert fp["kind"] == "file" and fp["n_bytes"] == len(data)
    assert fp["sha256"] == hashlib.sha256(data).hexdigest()


def test_dir_fingerprint_follows_listing(tmp_path):
    d = tmp_path / "photos"
    (d / "a").mkdir(parents=True)
    (d / "a" / "1.jpg").write_bytes(b"xx")
    (d / "2.jpg").write_bytes(b"yyy")
    fp = fingerprint(d)
    assert fp["kind"] == "dir" and fp["n_files"] == 2 and fp["n_bytes"] == 5
    # Independent computation of the documented listing hash (top-down walk, sorted names).
    listing = "2.jpg\x003\na/1.jpg\x002\n"
    assert fp["sha256"] == hashlib.sha256(listing.encode()).hexdigest()
    (d / "3.jpg").write_bytes(b"z")
    assert fingerprint(d)["sha256"] != fp["sha256"]
    (d / "3.jpg").unlink()
    assert fingerprint(d)["sha256"] == fp["sha256"]
    (d / "2.jpg").write_bytes(b"yy")  # truncated
    assert fingerprint(d)["sha256"] != fp["sha256"]


def test_missing_fingerprint(tmp_path):
    assert fingerprint(tmp_path / "nope") == {"path": str(tmp_path / "nope"), "kind": "missing", "sha256": None,
                                              "n_bytes": 0}


def test_roundtrip_and_changes(tmp_path):
    inp = tmp_path / "in.json"
    inp.write_text("{}")
    m = Manifest(stage="s", command="detret s", config={"k": 1}, config_sha256="h",
                 inputs={"ann": fingerprint(inp)})
    write_manifest(tmp_path / "stage", m)
    back = read_manifest(tmp_path / "stage")
    assert back.stage == "s" and back.inputs == m.inputs and back.state == "running"
    assert back.versions["python"] and "torch" in back.versions
    assert changed_entries(back.inputs) == []
    inp.write_text('{"a": 1}')
    assert changed_entries(back.inputs) == [f"ann ({inp}) changed"]
    inp.unlink()
    assert changed_entries(back.inputs) == [f"ann ({inp}) is missing"]


def test_read_rejects_foreign_and_broken(tmp_path):
    assert read_manifest(tmp_path) is None
    (tmp_path / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="not a detret manifest"):
        read_manifest(tmp_path)


def test_versions_include_detret():
    assert package_versions()["detret"]


def test_a_file_is_read_once_per_process_until_it_changes(tmp_path, monkeypatch):
    import builtins
    import os
    import time

    from detret.runs import manifest as manifest_mod
    from detret.runs.atomic import atomic_write_text

    path = tmp_path / "gallery.npy"
    path.write_bytes(b"a" * 5000)
    old_ns = time.time_ns() - 60 * 10 ** 9  # written a minute ago: not "racy"
    os.utime(path, ns=(old_ns, old_ns))
    opened = []
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda f, *a, **k: (opened.append(str(f)), real_open(f, *a, **k))[1])
    first = manifest_mod.sha256_file(path)
    assert manifest_mod.sha256_file(path) == first == hashlib.sha256(b"a" * 5000).hexdigest()
    assert opened.count(str(path)) == 1
    # replaced the way detret writes (atomic rename: a new inode), same size
    atomic_write_text(path, "b" * 5000)
    assert manifest_mod.sha256_file(path) == hashlib.sha256(b"b" * 5000).hexdigest()
    # just written, then rewritten in place at the same size within one tick of the file clock:
    # not remembered while racy, so the new content is seen
    st = os.stat(path)
    with real_open(path, "wb") as fh:
        fh.write(b"c" * 5000)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_ino == st.st_ino and os.stat(path).st_mtime_ns == st.st_mtime_ns
    assert manifest_mod.sha256_file(path) == hashlib.sha256(b"c" * 5000).hexdigest()
    assert opened.count(str(path)) == 3
