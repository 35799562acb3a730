"""Session engine state in Redis: one blob per session, written by compare-and-set.

A session's whole identification state — tally, score-follower tracks, recent embeddings, settings
(:meth:`scoreid.identify.engine.SessionEngine.to_bytes`) — is one Redis hash
``scoreid:session:{<id>}:engine`` with fields ``state`` (the blob), ``version`` (a counter) and
``library`` (the name of the library the session runs against). A
vote reads both, runs the engine, and writes the new state only if the version is still the one it
read (``cas.lua``, atomic on the server); otherwise the vote fails with :class:`Conflict` and
nothing changes — two writers can never interleave half-updates of one session. A reader that
still holds a session's state decoded (the aggregator's engine cache) reads only the version and
skips the blob (``get_many(..., have=)``); the compare-and-set runs by its SHA (``EVALSHA``, loaded
again if Redis lost it), so a vote batch is one small read and one write round trip. Every write
refreshes the TTL, so an idle session disappears after it; ``Close`` deletes it. Because nothing of
a session lives in the aggregator process, any replica can serve any vote and a restarted
aggregator continues every session where it was.

Each write carries a random id (field ``write``): when a reply is lost on a loaded machine (the
socket timeout) redis-py sends the pipeline again (its default ``Retry``), and the compare-and-set
then recognises its own write — the version it read plus one, under its id — instead of reporting
another writer.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import redis

from ops.metrics import REDIS_SECONDS

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

    @property
    def exists(self) -> bool:
        """Whether the session has a state in Redis (its blob may have been skipped: ``have``)."""
        return self.version > 0


class EngineStates:
    """Read and compare-and-set session engine blobs in one Redis."""

    def __init__(self, client: redis.Redis, ttl_s: int = 300, service: str = "aggregator"):
        self.r = client
        self.ttl_s = int(ttl_s)
        self.service = service
        self._cas = client.register_script((HERE / "cas.lua").read_text())

    def get_many(
        self, session_ids: Sequence[str], have: Callable[[str, int], bool] | None = None
    ) -> list[Stored]:
        """The states of many sessions. ``have(session, version)``: whether the caller already holds
        that version decoded — then only the version and library are read (``state`` is None with
        ``exists`` true), the blob only for the others (a second round trip, when any)."""
        if not session_ids:
            return []
        t0 = time.perf_counter()
        try:
            if have is None:
                return self._read(session_ids, ("state", "version", "library"))
            out = self._read(session_ids, ("version", "library"))
            need = [
                i
                for i, (sid, st) in enumerate(zip(session_ids, out))
                if st.exists and not have(sid, st.version)
            ]
            for i, st in zip(
                need, self._read([session_ids[i] for i in need], ("state", "version", "library"))
            ):
                out[i] = st
            return out
        finally:
            REDIS_SECONDS.labels(self.service, "get").observe(time.perf_counter() - t0)

    def _read(self, session_ids: Sequence[str], fields: tuple[str, ...]) -> list[Stored]:
        if not session_ids:
            return []
        pipe = self.r.pipeline(transaction=False)
        for sid in session_ids:
            pipe.hmget(key(sid), *fields)
        out = []
        for reply in pipe.execute():
            f = dict(zip(fields, reply))
            version = f.get("version")
            out.append(
                Stored(
                    f.get("state"),
                    int(version) if version is not None else 0,
                    (f.get("library") or b"").decode(),
                )
            )
        return out

    def get(self, session_id: str) -> Stored:
        return self.get_many([session_id])[0]

    def put_many(self, writes: Sequence[tuple[str, int, bytes, str]]) -> list[bool]:
        """Write ``(session, version read, new state, library)`` each atomically if the version is
        unchanged; per write whether it was written (False: a conflict, nothing written)."""
        if not writes:
            return []
        ids = [os.urandom(8).hex() for _ in writes]  # a retried pipeline finds its own writes
        for attempt in (0, 1):
            pipe = self.r.pipeline(transaction=False)
            # by SHA: no SCRIPT EXISTS round trip per batch
            for (sid, version, state, library), wid in zip(writes, ids, strict=True):
                pipe.evalsha(self._cas.sha, 1, key(sid), version, state, self.ttl_s, library, wid)
            t0 = time.perf_counter()
            try:
                replies = pipe.execute()
                break
            except redis.exceptions.NoScriptError:  # Redis restarted without it: no write ran; load, retry
                if attempt:
                    raise
                self.r.script_load(self._cas.script)
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
