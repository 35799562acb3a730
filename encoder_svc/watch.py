"""Deadlines of the open client streams: a stream that sends nothing in time is ended.

A handler awaiting the client's next message cannot notice that the message never comes. So each
stream runs inside :meth:`StreamWatch.open`, an ``asyncio.timeout`` whose deadline the stream
moves on (:meth:`Watched.extend`): the options must arrive within ``options_timeout_s``, then
every message within ``idle_timeout_s`` of the last, and no session outlives ``max_session_s``.
Once the deadline passes, whatever the stream awaits (a read, a write, its window's batch, an
internal call) is cancelled and ``open`` raises ``TimeoutError``; :attr:`Watched.expired` says
why. So a client cannot hold a slot for free, and a peer that vanished without closing its
connection is ended too (HTTP/2 keepalive catches the dead connection itself; see
``ops.grpc_server.keepalive_options``).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass


@dataclass
class Watched:
    """One open stream's deadline (``time.monotonic``, the event loop's clock) and why it would end then."""

    reason: str
    timer: asyncio.Timeout | None = None
    expired: str = ""  #: set (to ``reason``) once the deadline passed and the stream was ended

    def extend(self, timeout_s: float, reason: str, not_after: float | None = None) -> None:
        """The stream must send again within ``timeout_s`` (and end by ``not_after`` at the latest)."""
        deadline = time.monotonic() + timeout_s
        if not_after is not None and not_after < deadline:
            deadline, reason = not_after, "session exceeded its maximum duration"
        self.reason = reason
        assert self.timer is not None
        self.timer.reschedule(deadline)


class StreamWatch:
    """See the module docstring; ``count``: the streams open now."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()  # one servicer may serve on several loops (tests do)

    @contextlib.asynccontextmanager
    async def open(self, timeout_s: float, reason: str) -> AsyncIterator[Watched]:
        """Run the block under a deadline ``timeout_s`` from now (``TimeoutError`` once it passed)."""
        w = Watched(reason)
        with self._lock:
            self.count += 1
        try:
            async with asyncio.timeout(None) as timer:
                w.timer = timer
                w.extend(timeout_s, reason)
                yield w
        except TimeoutError:
            w.expired = w.reason
            raise
        finally:
            with self._lock:
                self.count -= 1
