"""Session tallies in Redis: the Lua scripts that implement ``VoteTally`` atomically, server side.

State lives only in Redis (three hashes per session, keys share the ``{session}`` hash tag so a
Redis Cluster keeps them on one shard), so any number of aggregator replicas can serve the same
sessions. Every update refreshes the session's TTL; an idle session disappears after it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
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


class RedisTallies:
    """Atomic decayed vote tallies for many sessions in one Redis."""

    def __init__(self, client: redis.Redis, ttl_s: int = 300, service: str = "aggregator"):
        self.r = client
        self.ttl_s = int(ttl_s)
        self.service = service
        self._vote = client.register_script((HERE / "vote.lua").read_text())
        self._top = client.register_script((HERE / "top.lua").read_text())

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
        t0 = time.perf_counter()
        try:
            reply = self._vote(keys=keys(session_id), args=args)
        except redis.ResponseError as e:
            if "time went backwards" in str(e):
                msg = str(e)
                raise TimeWentBackwards(msg[msg.index("time went backwards") :].strip()) from None
            raise
        finally:
            REDIS_SECONDS.labels(self.service, "vote").observe(time.perf_counter() - t0)
        return _decode(reply)

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
