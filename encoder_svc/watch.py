"""Deadlines of the open client streams: a stream that sends nothing in time is ended.

A gRPC handler waits for the client's next message (a blocking ``next(request_iterator)`` in the
threaded front, an awaited ``context.read()`` in the asyncio one); nothing inside it can notice
that the message never comes. :class:`StreamWatch` keeps one deadline per open stream — the
options must arrive within ``options_timeout_s``, then every message within ``idle_timeout_s`` of
the last, and no session outlives ``max_session_s`` — and one thread that ends a stream whose
deadline passed with the stream's own ``cancel`` callback: for a blocking handler
:func:`cancel_context` (status ``DEADLINE_EXCEEDED`` with the reason, then ``context.cancel()``:
its ``next`` raises); the asyncio front cancels the stream's task on its event loop. Either way
the stream's slot and session-gate place are freed. So a client cannot hold a slot for free, and
a peer that vanished without closing its connection is ended too (HTTP/2 keepalive catches the
dead connection itself; see ``ops.grpc_server.keepalive_options``).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc


@dataclass
class Watched:
    """One open stream: how to end it, its deadline (``time.monotonic``) and why it would end then."""

    cancel: Callable[[Watched], None]  #: called by the watch's thread once the deadline passed
    deadline: float
    reason: str
    expired: str = ""  #: set (to ``reason``) once the watch ended the stream
    closed: bool = False  #: set by :meth:`StreamWatch.close` (the stream ended by itself)
    id: int = field(default=0)


def cancel_context(context: Any) -> Callable[[Watched], None]:
    """How the watch ends the stream of a blocking handler: status ``DEADLINE_EXCEEDED`` with the
    reason, then ``context.cancel()`` (the handler's read raises)."""

    def cancel(w: Watched) -> None:
        context.set_code(grpc.StatusCode.DEADLINE_EXCEEDED)
        context.set_details(w.reason)
        context.cancel()

    return cancel


class StreamWatch:
    """See the module docstring. ``open`` a stream, ``extend`` its deadline, ``close`` it."""

    def __init__(self, interval_s: float = 0.2):
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._open: dict[int, Watched] = {}
        self._ids = itertools.count(1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="stream-watch", daemon=True)
        self._thread.start()

    def open(self, cancel: Callable[[Watched], None], timeout_s: float, reason: str) -> Watched:
        w = Watched(cancel, time.monotonic() + timeout_s, reason, id=next(self._ids))
        with self._lock:
            self._open[w.id] = w
        return w

    def extend(self, w: Watched, timeout_s: float, reason: str, not_after: float | None = None) -> None:
        """The stream must send again within ``timeout_s`` (and end by ``not_after`` at the latest)."""
        deadline = time.monotonic() + timeout_s
        if not_after is not None and not_after < deadline:
            deadline, reason = not_after, "session exceeded its maximum duration"
        with self._lock:
            w.deadline, w.reason = deadline, reason

    def close(self, w: Watched) -> None:
        with self._lock:
            self._open.pop(w.id, None)
            w.closed = True

    @property
    def count(self) -> int:
        with self._lock:
            return len(self._open)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            now = time.monotonic()
            with self._lock:
                due = [w for w in self._open.values() if w.deadline <= now and not w.expired]
                for w in due:
                    w.expired = w.reason
            for w in due:
                try:
                    w.cancel(w)
                except Exception:  # noqa: BLE001 - the RPC may have ended meanwhile
                    pass
