"""The Street2Shop downloader against a local HTTP server on 127.0.0.1 (no other network)."""
import io
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from detret.data.download import DownloadSettings, download_photos, read_url_list

SLOW_S = 1.5


def _jpeg(seed):
    arr = np.random.default_rng(seed).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG")
    return buf.getvalue()


GOOD = {1: _jpeg(1), 2: _jpeg(2), 7: _jpeg(7)}


class Handler(BaseHTTPRequestHandler):
    hits = Counter()
    lock = threading.Lock()

    def log_message(self, *args):  # keep test output quiet
        pass

    def _send(self, code, body=b"", ctype="image/jpeg"):
        try:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client timed out first (the slow file): that is the point

    def do_GET(self):
        with self.lock:
            self.hits[self.path] += 1
            n = self.hits[self.path]
        if self.path.startswith("/good/"):
            self._send(200, GOOD[int(self.path.split("/")[-1].split(".")[0])])
        elif self.path == "/broken.jpg":
            self._send(200, GOOD[1][: len(GOOD[1]) // 2])
        elif self.path == "/html.jpg":
            self._send(200, b"<html><body>This item is no longer available</body></html>", "text/html")
        elif self.path == "/flaky.jpg":
            self._send(503) if n == 1 else self._send(200, GOOD[7])
        elif self.path == "/slow.jpg":
            time.sleep(SLOW_S)
            self._send(200, GOOD[1])
        else:
            self._send(404, b"not found", "text/plain")


@pytest.fixture
def server():
    Handler.hits.clear()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _url_list(tmp_path, base):
    lines = [f"000000001,{base}/good/1.jpg", f"000000002,{base}/good/2.jpg", f"000000003,{base}/broken.jpg",
             f"000000004,{base}/html.jpg", f"000000005,{base}/missing.jpg", f"000000006,{base}/slow.jpg",
             f"000000007,{base}/flaky.jpg", ""]
    path = tmp_path / "photos.txt"
    path.write_text("\n".join(lines))
    return path


SETTINGS = DownloadSettings(workers=4, retries=2, backoff_s=0.01, timeout_s=0.4, checkpoint_every=2)


def test_download_classifies_and_resumes(tmp_path, server):
    urls = _url_list(tmp_path, server)
    out, manifest_path = tmp_path / "images", tmp_path / "download_manifest.json"
    manifest = download_photos(urls, out, manifest_path, settings=SETTINGS)
    status = {k: v["status"] for k, v in manifest["photos"].items()}
    assert status == {"1": "ok", "2": "ok", "3": "undecodable", "4": "undecodable", "5": "dead", "6": "error",
                      "7": "ok"}
    assert manifest["counts"] == {"ok": 3, "dead": 1, "undecodable": 2, "error": 1, "pending": 0}
    for pid, data in GOOD.items():
        assert (out / f"{pid:09d}.jpg").read_bytes() == data
    assert sorted(p.name for p in out.iterdir()) == ["000000001.jpg", "000000002.jpg", "000000007.jpg"]
    assert Handler.hits["/flaky.jpg"] == 2            # 503 once, then retried
    assert Handler.hits["/missing.jpg"] == 1          # 404 is final, not retried
    assert Handler.hits["/slow.jpg"] == SETTINGS.retries + 1
    assert "gave up after 3 attempts" in manifest["photos"]["6"]["detail"]
    assert json.loads(manifest_path.read_text()) == manifest

    # Resume: good files and dead links are not fetched again; a damaged file is.
    (out / "000000002.jpg").write_bytes(b"truncated")
    before = Counter(Handler.hits)
    again = download_photos(urls, out, manifest_path, settings=SETTINGS)
    fetched = Handler.hits - before
    assert "/good/1.jpg" not in fetched and "/missing.jpg" not in fetched and "/flaky.jpg" not in fetched
    assert fetched["/good/2.jpg"] == 1 and fetched["/broken.jpg"] == 1
    assert (out / "000000002.jpg").read_bytes() == GOOD[2]
    assert again["counts"]["ok"] == 3


def test_only_selected_ids(tmp_path, server):
    urls = _url_list(tmp_path, server)
    manifest = download_photos(urls, tmp_path / "images", tmp_path / "m.json", photo_ids={1, 5},
                               settings=SETTINGS)
    assert set(manifest["photos"]) == {"1", "5"}
    assert "/good/2.jpg" not in Handler.hits


def test_url_list_errors_name_the_line(tmp_path):
    bad = tmp_path / "photos.txt"
    bad.write_text("000000001,http://127.0.0.1/x.jpg\nnot a line\n")
    with pytest.raises(ValueError, match="photos.txt:2: expected '<photo id>,<url>'"):
        read_url_list(bad)
    bad.write_text("000000012,http://127.0.0.1/x.jpg,with,commas\n")
    assert read_url_list(bad) == [(12, "http://127.0.0.1/x.jpg,with,commas")]
