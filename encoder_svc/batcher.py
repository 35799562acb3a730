"""Dynamic batching: windows from all sessions are grouped into one encoder call.

``DynamicBatcher(run, max_batch, max_wait_s, workers=1)``: ``submit(item)`` returns a Future;
each of ``workers`` threads takes the oldest items, waits at most ``max_wait_s`` after the oldest arrived for the
batch to fill up to ``max_batch``, then calls ``run(items) -> results`` (one per item) outside
the lock. An exception from ``run`` is set on every future of that batch. Each future's result
is ``(result, queue_wait_s)``; a future cancelled before its batch is taken (a coroutine that
awaited it was cancelled) is dropped from the batch. With two workers one batch is encoded while the previous one waits
for its search and vote RPCs (and two encodes can run on two cores); a session has at most one
window in flight, so its windows stay in order.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from ops.metrics import BATCH_SIZE, QUEUE_DEPTH, STAGE_SECONDS


class BatcherClosed(RuntimeError):
    """The batcher was stopped; no more items are accepted."""


class DynamicBatcher:
    def __init__(
        self,
        run: Callable[[Sequence[Any]], Sequence[Any]],
        max_batch: int = 64,
        max_wait_s: float = 0.005,
        service: str = "encoder",
        workers: int = 1,
    ):
        if max_batch < 1 or max_wait_s < 0 or workers < 1:
            raise ValueError(
                f"need max_batch >= 1, max_wait_s >= 0 and workers >= 1, got {max_batch}, {max_wait_s}, {workers}"
            )
        self.run = run
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.service = service
        self._q: deque[tuple[Any, Future, float]] = deque()
        self._cv = threading.Condition()
        self._stopped = False
        self._threads = [
            threading.Thread(target=self._loop, name=f"dynamic-batcher-{i}", daemon=True)
            for i in range(workers)
        ]
        for t in self._threads:
            t.start()

    def submit(self, item: Any) -> Future:
        fut: Future = Future()
        with self._cv:
            if self._stopped:
                raise BatcherClosed("the encoder is shutting down")
            self._q.append((item, fut, time.perf_counter()))
            QUEUE_DEPTH.labels(self.service).set(len(self._q))
            self._cv.notify()
        return fut

    def stop(self) -> None:
        with self._cv:
            self._stopped = True
            self._cv.notify_all()
        for t in self._threads:
            t.join(5)

    def _take(self) -> list[tuple[Any, Future, float]] | None:
        with self._cv:
            while not self._q and not self._stopped:
                self._cv.wait()
            if not self._q:
                return None
            deadline = self._q[0][2] + self.max_wait_s
            while len(self._q) < self.max_batch and not self._stopped:
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                self._cv.wait(left)
            n = min(self.max_batch, len(self._q))
            batch = [self._q.popleft() for _ in range(n)]
            QUEUE_DEPTH.labels(self.service).set(len(self._q))
        # running from here on (a later cancel() is refused), or dropped when cancelled already
        return [b for b in batch if b[1].set_running_or_notify_cancel()]

    def _loop(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            if not batch:  # every item of it was cancelled
                continue
            start = time.perf_counter()
            BATCH_SIZE.labels(self.service).observe(len(batch))
            waits = [start - t for _, _, t in batch]
            for w in waits:
                STAGE_SECONDS.labels(self.service, "queue_wait").observe(w)
            try:
                results = self.run([item for item, _, _ in batch])
                if len(results) != len(batch):
                    raise RuntimeError(
                        f"batch function returned {len(results)} results for {len(batch)} items"
                    )
            except BaseException as e:  # noqa: BLE001 - delivered to every waiting session
                for _, fut, _ in batch:
                    fut.set_exception(e)
                continue
            for (_, fut, _), res, w in zip(batch, results, waits):
                fut.set_result((res, w))
