"""Exporting ModaNet photos from a PaperDoll-style LMDB made on the fly."""
import io
import json

import lmdb
import numpy as np
import pytest
from PIL import Image

from detret.data.paperdoll import export_modanet_images


def _jpeg(seed):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (20, 16, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def test_export_writes_bytes_as_stored_and_resumes(tmp_path):
    db = tmp_path / "photos.lmdb"
    env = lmdb.open(str(db), map_size=1 << 24)
    with env.begin(write=True) as txn:
        txn.put(b"100", _jpeg(1))
        txn.put(b"200", _jpeg(2))
        txn.put(b"300", b"<html>not a photo</html>")
    env.close()
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({"images": [{"id": i, "file_name": f"{i:07d}.jpg", "width": 16, "height": 20}
                                          for i in (100, 200, 300, 400)]}))
    out = tmp_path / "images"
    report = export_modanet_images(db, ann, out)
    assert report["exported"] == 2 and report["missing_in_database"] == [400]
    assert [u["id"] for u in report["undecodable"]] == [300]
    assert (out / "0000100.jpg").read_bytes() == _jpeg(1)
    again = export_modanet_images(db, ann, out)
    assert again["exported"] == 0 and again["already_present"] == 2
    with pytest.raises(FileNotFoundError, match="nope.lmdb"):
        export_modanet_images(tmp_path / "nope.lmdb", ann, out)
