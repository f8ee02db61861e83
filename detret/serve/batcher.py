"""Concurrent requests batched through the models, with a bounded queue, a deadline and a heartbeat.

Requests wait in a queue of at most ``max_queue``; one worker thread takes the first waiting
request and every other one already waiting (up to ``max_batch``) and runs them through the
models together. A request arriving at a full queue is refused at once (``QueueFull``: the
service answers 503 with Retry-After), so latency stays bounded under overload instead of growing
with the queue. The worker is a thread, not the event loop: the models release the GIL, and the
server keeps accepting (and refusing) requests while a batch runs.

One job's failure is its own: when a batch raises, each of its jobs is run again alone, so the
others get their answers and only the job that fails alone gets the exception. A request waits at
most ``timeout_s`` (``TimedOut``: 503); a job whose request has given up is dropped before it runs.
:meth:`Batcher.health` is the worker's heartbeat: alive, and not stuck in one batch for longer
than ``timeout_s``.
"""
from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

logger = logging.getLogger(__name__)


class QueueFull(Exception):
    """More requests wait than the queue holds."""


class TimedOut(Exception):
    """The models did not answer the request within the batcher's deadline."""


class Batcher:
    def __init__(self, run_batch: Callable[[List[Any]], List[Any]], *, max_batch: int = 8, max_queue: int = 64,
                 timeout_s: float = 30.0):
        if max_batch < 1 or max_queue < 1 or timeout_s <= 0:
            raise ValueError(f"max_batch and max_queue must be at least 1 and timeout_s positive, got {max_batch}, "
                             f"{max_queue}, {timeout_s}")
        self.run_batch, self.max_batch, self.timeout_s = run_batch, max_batch, timeout_s
        self._queue: "queue.Queue[Optional[Tuple]]" = queue.Queue(maxsize=max_queue)
        self._busy_since: Optional[float] = None   # monotonic time the running batch started; None when idle
        self.batches_done = 0
        self._thread = threading.Thread(target=self._work, name="detret-batcher", daemon=True)
        self._thread.start()

    def waiting(self) -> int:
        return self._queue.qsize()

    def full(self) -> bool:
        """Whether a request submitted now would be refused (checked before an upload is decoded)."""
        return self._queue.full()

    async def submit(self, job: Any) -> Any:
        """The job's result, computed in a batch; raises QueueFull at once when the queue is full, TimedOut
        when no answer came within ``timeout_s``, and the job's own exception when it fails alone."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        try:
            self._queue.put_nowait((job, future, loop, time.perf_counter()))
        except queue.Full:
            raise QueueFull() from None
        try:
            return await asyncio.wait_for(future, self.timeout_s)
        except asyncio.TimeoutError:
            raise TimedOut(f"the models did not answer within {self.timeout_s:g} s") from None

    def health(self) -> Dict[str, Any]:
        """The worker's heartbeat: ``ok`` unless its thread died or one batch has run past ``timeout_s``."""
        busy = None if self._busy_since is None else time.monotonic() - self._busy_since
        stalled = busy is not None and busy > self.timeout_s
        ok = self._thread.is_alive() and not stalled
        return {"ok": ok, "worker_alive": self._thread.is_alive(), "batch_running_s": None if busy is None
                else round(busy, 3), "batches_done": self.batches_done, "waiting": self.waiting()}

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

    def _run_isolated(self, jobs: List[Any]) -> List[Tuple[Any, Optional[BaseException]]]:
        """(result, None) or (None, exception) per job: a failing batch is run again job by job."""
        try:
            return [(r, None) for r in self.run_batch(jobs)]
        except Exception as exc:  # noqa: BLE001 -- which job failed is found below; each gets its own outcome
            if len(jobs) == 1:
                return [(None, exc)]
            logger.warning("a batch of %d searches failed (%s: %s); running each alone", len(jobs),
                           type(exc).__name__, exc)
        out: List[Tuple[Any, Optional[BaseException]]] = []
        for job in jobs:
            try:
                out.append((self.run_batch([job])[0], None))
            except Exception as exc:  # noqa: BLE001 -- this job's failure alone, handed to its request
                out.append((None, exc))
        return out

    def _work(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            batch = [item for item in batch if not item[1].done()]  # requests that gave up (deadline)
            if not batch:
                continue
            started = time.perf_counter()
            for job, _, _, queued in batch:
                if hasattr(job, "timings_ms"):
                    job.timings_ms["queue"] = (started - queued) * 1e3
            self._busy_since = time.monotonic()
            try:
                outcomes = self._run_isolated([job for job, _, _, _ in batch])
            finally:
                self._busy_since = None
                self.batches_done += 1
            for (_, future, loop, _), (result, exc) in zip(batch, outcomes):
                loop.call_soon_threadsafe(_set, future, result, exc)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)


def _set(future: asyncio.Future, result: Any, exc: Optional[BaseException]) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)
