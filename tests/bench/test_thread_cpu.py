"""bench/thread_cpu.py: a busy thread of this process shows up as about a core; idle ones as none."""

from __future__ import annotations

import os
import threading
import time

from bench import thread_cpu


def test_a_spinning_thread_is_measured_as_most_of_a_core():
    stop = time.monotonic() + 2.5

    def spin() -> None:
        x = 0
        while time.monotonic() < stop:
            x += 1

    t = threading.Thread(target=spin, name="spinner")
    t.start()
    try:
        cores = thread_cpu.measure(os.getpid(), 1.5)
    finally:
        t.join()
    total = sum(cores.values())
    assert 0.3 <= total <= 1.3, cores  # one spinning thread (2 loaded cores: at least a share of one)
    assert max(cores.values()) >= 0.3
