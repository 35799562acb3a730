"""Session tallies in Redis: the Lua scripts that implement ``VoteTally`` atomically, server side.

State lives only in Redis (three hashes per session, keys share the ``{session}`` hash tag so a
Redis Cluster keeps them on one shard), so any number of aggregator replicas can serve the same
sessions. Every update refreshes the session's TTL; an idle session disappears after it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from scoreid.serve.metrics import REDIS_SECONDS

HERE = Path(__file__).resolve().parent
KEY_PREFIX = "scoreid:session"


class TimeWentBackwards(ValueError):
    """A vote for an earlier audio time than the session's last one."""


def keys(session_id: str) -> list[str]:
    base = f"{KEY_PREFIX}:{{{session_id}}}"
    return [f"{base}:tally", f"{base}:meta", f"{base}:pos"]


@dataclass
class TallyState:
    t_last: float | None
    top: list[tuple[str, float]]
    position: dict[str, Any] | None
    total: float = 0.0  # sum of all tallies


def _decode(reply: list[Any]) -> TallyState:
    t_raw, flat, pos, total = reply
    t_s = t_raw.decode() if isinstance(t_raw, bytes) else str(t_raw)
    items = [(flat[i].decode(), float(flat[i + 1])) for i in range(0, len(flat), 2)]
    position = json.loads(pos) if pos else None
    return TallyState(float(t_s) if t_s else None, items, position, float(total))


def _script_error(e: redis.ResponseError) -> Exception:
    """The vote script's own refusal as :class:`TimeWentBackwards`; anything else unchanged."""
    msg = str(e)
    if "time went backwards" in msg:
        return TimeWentBackwards(msg[msg.index("time went backwards") :].strip())
    return e


@dataclass
class VoteUpdate:
    """One session's vote for :meth:`RedisTallies.update_many` (no votes: read the state only)."""

    session_id: str
    votes: Mapping[str, float]
    t: float
    half_life: float
    top_k: int = 5
    positions: Mapping[str, dict[str, Any]] | None = None


class RedisTallies:
    """Atomic decayed vote tallies for many sessions in one Redis."""

    def __init__(self, client: redis.Redis, ttl_s: int = 300, service: str = "aggregator"):
        self.r = client
        self.ttl_s = int(ttl_s)
        self.service = service
        self._vote = client.register_script((HERE / "vote.lua").read_text())
        self._top = client.register_script((HERE / "top.lua").read_text())

    def _vote_args(
        self,
        votes: Mapping[str, float],
        t: float,
        half_life: float,
        top_k: int,
        positions: Mapping[str, dict[str, Any]] | None,
    ) -> list[Any]:
        if not (half_life > 0):
            raise ValueError(f"half_life must be positive, got {half_life}")
        if not math.isfinite(t):
            raise ValueError(f"time must be finite, got {t}")
        hl = "inf" if math.isinf(half_life) else repr(float(half_life))
        args: list[Any] = [repr(float(t)), hl, self.ttl_s, int(top_k), len(votes)]
        for p, v in votes.items():
            args += [p, repr(float(v))]
        positions = positions or {}
        args.append(len(positions))
        for p, pos in positions.items():
            args += [p, json.dumps(pos, separators=(",", ":"))]
        return args

    def update(
        self,
        session_id: str,
        votes: Mapping[str, float],
        t: float,
        half_life: float,
        top_k: int = 5,
        positions: Mapping[str, dict[str, Any]] | None = None,
    ) -> TallyState:
        """Decay the session to ``t``, add ``votes``, store per-piece positions; returns top-k."""
        args = self._vote_args(votes, t, half_life, top_k, positions)
        t0 = time.perf_counter()
        try:
            reply = self._vote(keys=keys(session_id), args=args)
        except redis.ResponseError as e:
            raise _script_error(e) from None
        finally:
            REDIS_SECONDS.labels(self.service, "vote").observe(time.perf_counter() - t0)
        return _decode(reply)

    def update_many(self, updates: Sequence[VoteUpdate]) -> list[TallyState | Exception]:
        """Many sessions' updates in one Redis round trip (a pipeline; each script runs atomically).

        An update with no votes only reads the session's state. Per update: its :class:`TallyState`,
        or the error that update alone met (a ``ValueError`` such as :class:`TimeWentBackwards`
        for bad arguments, a ``redis.ResponseError`` otherwise); a lost connection raises for the
        whole call.
        """
        out: list[TallyState | Exception | None] = [None] * len(updates)
        pipe = self.r.pipeline(transaction=False)
        queued: list[int] = []
        for i, u in enumerate(updates):
            try:
                if u.votes:
                    args = self._vote_args(u.votes, u.t, u.half_life, u.top_k, u.positions)
                    self._vote(keys=keys(u.session_id), args=args, client=pipe)
                else:
                    self._top(keys=keys(u.session_id), args=[int(u.top_k)], client=pipe)
            except ValueError as e:
                out[i] = e
                continue
            queued.append(i)
        t0 = time.perf_counter()
        try:
            replies = pipe.execute(raise_on_error=False) if queued else []
        finally:
            REDIS_SECONDS.labels(self.service, "vote_batch").observe(time.perf_counter() - t0)
        for i, reply in zip(queued, replies):
            if isinstance(reply, redis.ConnectionError | redis.TimeoutError):
                raise reply
            if isinstance(reply, redis.ResponseError):
                out[i] = _script_error(reply)
            elif isinstance(reply, Exception):
                out[i] = reply
            else:
                out[i] = _decode(reply)
        return [o if o is not None else ValueError("no reply") for o in out]

    def get(self, session_id: str, top_k: int = 5) -> TallyState:
        t0 = time.perf_counter()
        try:
            return _decode(self._top(keys=keys(session_id), args=[int(top_k)]))
        finally:
            REDIS_SECONDS.labels(self.service, "get").observe(time.perf_counter() - t0)

    def close(self, session_id: str) -> bool:
        t0 = time.perf_counter()
        try:
            return bool(self.r.delete(*keys(session_id)))
        finally:
            REDIS_SECONDS.labels(self.service, "close").observe(time.perf_counter() - t0)

    def exists(self, session_id: str) -> bool:
        return bool(self.r.exists(*keys(session_id)))
