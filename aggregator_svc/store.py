"""Session engine state in Redis: one blob per session, written by compare-and-set.

A session's whole identification state — tally, score-follower tracks, recent embeddings, settings
(:meth:`scoreid.identify.engine.SessionEngine.to_bytes`) — is one Redis hash
``scoreid:session:{<id>}:engine`` with fields ``state`` (the blob), ``version`` (a counter) and
``library`` (the name of the library the session runs against). A
vote reads both, runs the engine, and writes the new state only if the version is still the one it
read (``cas.lua``, atomic on the server); otherwise the vote fails with :class:`Conflict` and
nothing changes — two writers can never interleave half-updates of one session. Every write
refreshes the TTL, so an idle session disappears after it; ``Close`` deletes it. Because nothing of
a session lives in the aggregator process, any replica can serve any vote and a restarted
aggregator continues every session where it was.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import redis

from scoreid.serve.metrics import REDIS_SECONDS

HERE = Path(__file__).resolve().parent
KEY_PREFIX = "scoreid:session"


class Conflict(Exception):
    """The session's state changed between the read and the write (another writer)."""


def key(session_id: str) -> str:
    return f"{KEY_PREFIX}:{{{session_id}}}:engine"


@dataclass
class Stored:
    """A session's state as read: the blob (``None``: no such session), its version and library."""

    state: bytes | None
    version: int
    library: str = ""


class EngineStates:
    """Read and compare-and-set session engine blobs in one Redis."""

    def __init__(self, client: redis.Redis, ttl_s: int = 300, service: str = "aggregator"):
        self.r = client
        self.ttl_s = int(ttl_s)
        self.service = service
        self._cas = client.register_script((HERE / "cas.lua").read_text())

    def get_many(self, session_ids: Sequence[str]) -> list[Stored]:
        """The states of many sessions in one round trip."""
        if not session_ids:
            return []
        pipe = self.r.pipeline(transaction=False)
        for sid in session_ids:
            pipe.hmget(key(sid), "state", "version", "library")
        t0 = time.perf_counter()
        try:
            replies = pipe.execute()
        finally:
            REDIS_SECONDS.labels(self.service, "get").observe(time.perf_counter() - t0)
        return [Stored(state, int(version) if version is not None else 0, (lib or b"").decode())
                for state, version, lib in replies]  # fmt: skip

    def get(self, session_id: str) -> Stored:
        return self.get_many([session_id])[0]

    def put_many(self, writes: Sequence[tuple[str, int, bytes, str]]) -> list[bool]:
        """Write ``(session, version read, new state, library)`` each atomically if the version is
        unchanged; per write whether it was written (False: a conflict, nothing written)."""
        if not writes:
            return []
        pipe = self.r.pipeline(transaction=False)
        for sid, version, state, library in writes:
            self._cas(keys=[key(sid)], args=[version, state, self.ttl_s, library], client=pipe)
        t0 = time.perf_counter()
        try:
            replies = pipe.execute()
        finally:
            REDIS_SECONDS.labels(self.service, "put").observe(time.perf_counter() - t0)
        return [int(r) == 1 for r in replies]

    def put(self, session_id: str, version: int, state: bytes, library: str = "") -> None:
        if not self.put_many([(session_id, version, state, library)])[0]:
            raise Conflict(f"session {session_id} was changed by another writer; nothing was written")

    def close(self, session_id: str) -> bool:
        t0 = time.perf_counter()
        try:
            return bool(self.r.delete(key(session_id)))
        finally:
            REDIS_SECONDS.labels(self.service, "close").observe(time.perf_counter() - t0)

    def exists(self, session_id: str) -> bool:
        return bool(self.r.exists(key(session_id)))
