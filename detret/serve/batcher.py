"""Concurrent requests batched through the models, with a bounded queue.

Requests wait in a queue of at most ``max_queue``; one worker thread takes the first waiting
request and every other one already waiting (up to ``max_batch``) and runs them through the
models together. A request arriving at a full queue is refused at once (``QueueFull``: the
service answers 503 with Retry-After), so latency stays bounded under overload instead of growing
with the queue. The worker is a thread, not the event loop: the models release the GIL, and the
server keeps accepting (and refusing) requests while a batch runs.
"""
from __future__ import annotations

import asyncio
import queue
import threading
import time
from typing import Any, Callable, List, Optional, Tuple


class QueueFull(Exception):
    """More requests wait than the queue holds."""


class Batcher:
    def __init__(self, run_batch: Callable[[List[Any]], List[Any]], *, max_batch: int = 8, max_queue: int = 64):
        if max_batch < 1 or max_queue < 1:
            raise ValueError(f"max_batch and max_queue must be at least 1, got {max_batch}, {max_queue}")
        self.run_batch, self.max_batch = run_batch, max_batch
        self._queue: "queue.Queue[Optional[Tuple]]" = queue.Queue(maxsize=max_queue)
        self._thread = threading.Thread(target=self._work, name="detret-batcher", daemon=True)
        self._thread.start()

    def waiting(self) -> int:
        return self._queue.qsize()

    async def submit(self, job: Any) -> Any:
        """The job's result, computed in a batch; raises QueueFull at once when the queue is full."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        try:
            self._queue.put_nowait((job, future, loop, time.perf_counter()))
        except queue.Full:
            raise QueueFull() from None
        return await future

    def _take(self) -> Optional[List[Tuple]]:
        first = self._queue.get()
        if first is None:
            return None
        batch = [first]
        while len(batch) < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)  # stop after this batch
                break
            batch.append(item)
        return batch

    def _work(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            started = time.perf_counter()
            for job, _, _, queued in batch:
                if hasattr(job, "timings_ms"):
                    job.timings_ms["queue"] = (started - queued) * 1e3
            try:
                results = self.run_batch([job for job, _, _, _ in batch])
            except BaseException as exc:  # noqa: BLE001 -- handed to every waiting request, which reports it
                for _, future, loop, _ in batch:
                    loop.call_soon_threadsafe(_set, future, None, exc)
                continue
            for (_, future, loop, _), result in zip(batch, results):
                loop.call_soon_threadsafe(_set, future, result, None)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)


def _set(future: asyncio.Future, result: Any, exc: Optional[BaseException]) -> None:
    if future.cancelled():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)
