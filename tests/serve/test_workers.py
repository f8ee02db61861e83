"""`detret serve --workers N`: N processes on one port answering as one server over one catalogue (its vectors on
Milvus Lite's server here, as N machines would share a Milvus), and a refusal where Milvus Lite embedded
cannot be opened by N processes. The load is small and stops by itself; nothing is timed."""
import concurrent.futures
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from detret.catalogue.move import move_vectors
from detret.errors import InputError
from detret.serve.workers import check_workers
from tests.helpers import copy_catalogue, free_port
from tests.serve.helpers import street_query


def _wait_healthy(url, proc, timeout_s=300):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"{url} did not answer within {timeout_s} s")


def _worker_pids(parent: int):
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(parent)], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


@pytest.mark.slow
def test_two_workers_answer_as_one_server(demo_catalogue, milvus_server, tmp_path):
    root, pcfg = demo_catalogue
    cat = copy_catalogue(root, tmp_path / "cat")
    move_vectors(cat, "milvus:" + milvus_server)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "detret", "serve", str(cat), "--port", str(port), "--workers", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ})
    try:
        _wait_healthy(url, proc)
        assert len(_worker_pids(proc.pid)) >= 2   # uvicorn's supervisor and its two workers
        data, category, box, _ = street_query(pcfg)

        def search(_):
            response = httpx.post(f"{url}/api/search", files={"photo": ("s.jpg", data, "image/jpeg")},
                                  data={"category": category, "box": ",".join(map(str, box)), "k": "5"}, timeout=120)
            return response.status_code, [r["photo_id"] for r in response.json()["garments"][0]["results"]]

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(search, range(8)))
        assert {code for code, _ in answers} == {200}
        assert len({tuple(ids) for _, ids in answers}) == 1 and answers[0][1]   # every worker answers the same
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_workers_are_refused_on_milvus_lite_embedded(demo_catalogue, tmp_path):
    cat = copy_catalogue(demo_catalogue[0], tmp_path / "cat")
    check_workers(cat, 2)   # FAISS files: each worker maps the segments
    move_vectors(cat, "milvus:vectors.db")
    check_workers(cat, 1)
    with pytest.raises(InputError, match="one process at a time"):
        check_workers(cat, 2)
