"""The batcher: requests waiting together run through the models together; a full queue refuses at once."""
import asyncio
import threading

import pytest

from detret.serve.batcher import Batcher, QueueFull


def test_waiting_requests_share_a_batch_and_a_full_queue_refuses():
    release = threading.Event()
    batches = []

    def run_batch(jobs):
        batches.append(list(jobs))
        release.wait(timeout=30)
        return [j * 10 for j in jobs]

    batcher = Batcher(run_batch, max_batch=3, max_queue=4)

    async def scenario():
        first = asyncio.ensure_future(batcher.submit(0))
        while not batches:  # the worker holds job 0; the next ones wait in the queue
            await asyncio.sleep(0.001)
        waiting = [asyncio.ensure_future(batcher.submit(i)) for i in range(1, 5)]
        await asyncio.sleep(0)
        while batcher.waiting() < 4:
            await asyncio.sleep(0.001)
        with pytest.raises(QueueFull):
            await batcher.submit(99)
        release.set()
        return await first, await asyncio.gather(*waiting)

    try:
        first, rest = asyncio.run(scenario())
    finally:
        release.set()
        batcher.close()
    assert first == 0 and rest == [10, 20, 30, 40]
    assert batches == [[0], [1, 2, 3], [4]]


def test_a_job_that_fails_alone_gets_its_error_and_the_worker_goes_on():
    calls = []

    def run_batch(jobs):
        calls.append(jobs)
        if len(calls) == 1:
            raise RuntimeError("model failed")
        return jobs

    batcher = Batcher(run_batch, max_batch=8, max_queue=8)

    async def scenario():
        with pytest.raises(RuntimeError, match="model failed"):
            await batcher.submit(1)
        return await batcher.submit(2)

    try:
        assert asyncio.run(scenario()) == 2
    finally:
        batcher.close()


def test_one_jobs_failure_is_its_own_the_others_of_its_batch_are_answered():
    """Before: the batch's exception was handed to every request of the batch."""
    release, batches = threading.Event(), []

    def run_batch(jobs):
        batches.append(list(jobs))
        if jobs == [0]:
            release.wait(timeout=30)
        if "bad" in jobs:
            raise ValueError("height 0")
        return [j * 10 for j in jobs]

    batcher = Batcher(run_batch, max_batch=8, max_queue=8)

    async def scenario():
        first = asyncio.ensure_future(batcher.submit(0))
        while not batches:
            await asyncio.sleep(0.001)
        rest = [asyncio.ensure_future(batcher.submit(j)) for j in (1, "bad", 3)]
        while batcher.waiting() < 3:
            await asyncio.sleep(0.001)
        release.set()
        return await first, await asyncio.gather(*rest, return_exceptions=True)

    try:
        first, (one, bad, three) = asyncio.run(scenario())
    finally:
        release.set()
        batcher.close()
    assert (first, one, three) == (0, 10, 30) and isinstance(bad, ValueError)
    assert batches == [[0], [1, "bad", 3], [1], ["bad"], [3]]


def test_a_request_past_its_deadline_times_out_and_its_job_is_dropped():
    from detret.serve.batcher import TimedOut

    release, ran = threading.Event(), []

    def run_batch(jobs):
        ran.extend(jobs)
        release.wait(timeout=30)
        return jobs

    batcher = Batcher(run_batch, max_batch=1, max_queue=8, timeout_s=0.2)

    async def scenario():
        first = asyncio.ensure_future(batcher.submit("stuck"))
        late = asyncio.ensure_future(batcher.submit("gave up"))
        for task in (first, late):
            with pytest.raises(TimedOut, match="within 0.2 s"):
                await task
        assert not batcher.health()["ok"] or batcher.health()["batch_running_s"] is not None
        release.set()
        return await batcher.submit("after")

    try:
        assert asyncio.run(scenario()) == "after"
    finally:
        release.set()
        batcher.close()
    assert ran == ["stuck", "after"]   # the request that gave up while waiting was never run


def test_a_full_queue_is_a_503_with_retry_after(demo_catalogue, tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from detret.serve.app import create_app
    from tests.helpers import copy_catalogue

    root, pcfg = demo_catalogue
    app = create_app(copy_catalogue(root, tmp_path / "cat"))

    async def full(job):
        raise QueueFull()

    monkeypatch.setattr(app.state.batcher, "submit", full)
    photo = next((root / "photos").rglob("*.jpg")).read_bytes()
    with TestClient(app) as client:
        response = client.post("/api/search", files={"photo": ("x.jpg", photo, "image/jpeg")})
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert "busy" in response.json()["error"]
