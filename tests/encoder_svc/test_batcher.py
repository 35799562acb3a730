"""DynamicBatcher: batching by size and wait, errors to every future, and concurrent workers."""

from __future__ import annotations

import threading
import time

import pytest

from encoder_svc.batcher import BatcherClosed, DynamicBatcher


def test_items_are_batched_and_answered_in_order():
    sizes: list[int] = []

    def run(items):
        sizes.append(len(items))
        return [x * 10 for x in items]

    b = DynamicBatcher(run, max_batch=4, max_wait_s=0.05)
    futs = [b.submit(i) for i in range(10)]
    assert [f.result(5)[0] for f in futs] == [i * 10 for i in range(10)]
    assert max(sizes) <= 4 and sum(sizes) == 10
    b.stop()
    with pytest.raises(BatcherClosed):
        b.submit(1)


def test_an_error_reaches_every_future_of_its_batch():
    def run(items):
        raise RuntimeError("encoder broke")

    b = DynamicBatcher(run, max_batch=8, max_wait_s=0.01)
    futs = [b.submit(i) for i in range(3)]
    for f in futs:
        with pytest.raises(RuntimeError, match="encoder broke"):
            f.result(5)
    b.stop()


def test_two_workers_keep_two_batches_in_flight():
    release = threading.Event()
    in_flight, peak = [0], [0]
    lock = threading.Lock()

    def run(items):
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        release.wait(5)
        with lock:
            in_flight[0] -= 1
        return list(items)

    b = DynamicBatcher(run, max_batch=1, max_wait_s=0.0, workers=2)
    futs = [b.submit(i) for i in range(4)]
    deadline = time.monotonic() + 5
    while peak[0] < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()
    assert [f.result(5)[0] for f in futs] == [0, 1, 2, 3]
    assert peak[0] == 2
    b.stop()
    with pytest.raises(ValueError):
        DynamicBatcher(run, workers=0)


def test_a_cancelled_item_is_dropped_and_a_running_one_cannot_be_cancelled():
    """A coroutine that awaited its window and was cancelled cancels the future: the window is left
    out of its batch; once a batch runs, its futures refuse cancel() and all get their results."""
    started, release = threading.Event(), threading.Event()
    seen: list[list[int]] = []

    def run(items):
        seen.append(list(items))
        started.set()
        release.wait(5)
        return list(items)

    b = DynamicBatcher(run, max_batch=8, max_wait_s=0.05)
    first = b.submit(0)
    assert started.wait(5)
    assert not first.cancel()  # running: refused
    futs = [b.submit(i) for i in (1, 2, 3)]
    assert futs[1].cancel()  # still queued: cancelled
    release.set()
    assert first.result(5)[0] == 0
    assert [futs[0].result(5)[0], futs[2].result(5)[0]] == [1, 3]
    assert futs[1].cancelled() and seen == [[0], [1, 3]]
    b.stop()
