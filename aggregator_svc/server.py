"""The Aggregator gRPC servicer: Vote / Get / Close over :class:`RedisTallies`.

The hits of a window vote for their pieces (``votes_from_hits``: the core's
:func:`scoreid.identify.tally.window_votes` — similarity-weighted, normalised for piece length by
each hit's ``chance_weight``); the best hit of each piece in the window becomes that piece's
followed position. Errors map to gRPC statuses: bad
arguments -> INVALID_ARGUMENT, Redis down -> UNAVAILABLE.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import grpc
import redis

from aggregator_svc.store import RedisTallies, TallyState, TimeWentBackwards, VoteUpdate
from proto.scoreid.v1 import scoreid_pb2 as pb
from proto.scoreid.v1 import scoreid_pb2_grpc as pbg
from scoreid.identify.tally import VOTE_TEMPERATURE, window_votes
from scoreid.serve.grpc_server import add_standard_services
from scoreid.serve.logs import log_event
from scoreid.serve.metrics import ERRORS, RPC_SECONDS

SERVICE = "aggregator"
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Aggregator"].full_name
log = logging.getLogger("scoreid.aggregator")


def votes_from_hits(
    hits: Any, temperature: float = VOTE_TEMPERATURE
) -> tuple[dict[str, float], dict[str, dict[str, Any]]]:
    """The window's votes (:func:`window_votes`); the best hit of each piece is its position."""
    votes = window_votes(((h.piece, float(h.score), float(h.chance_weight)) for h in hits), temperature)
    positions: dict[str, dict[str, Any]] = {}
    for h in sorted(hits, key=lambda h: -float(h.score)):
        if h.piece not in positions:
            positions[h.piece] = {"piece": h.piece, "page": h.page, "system": h.system, "x": h.x,
                                  "y0": h.y0, "y1": h.y1, "similarity": float(h.score)}  # fmt: skip
    return votes, positions


def state_to_pb(st: TallyState) -> pb.VoteResponse:
    total = st.total or 1.0
    resp = pb.VoteResponse(
        top=[pb.PieceScore(piece=p, score=v / total, votes=v) for p, v in st.top], total=st.total
    )
    if st.t_last is not None:
        resp.t_seconds = st.t_last
    if st.position:
        resp.position.CopyFrom(pb.Position(**st.position))
    return resp


class AggregatorServicer(pbg.AggregatorServicer):
    def __init__(self, tallies: RedisTallies, half_life_s: float = 20.0, top_k: int = 5,
                 vote_temperature: float = VOTE_TEMPERATURE):  # fmt: skip
        if not vote_temperature > 0:
            raise ValueError(
                f"vote_temperature must be > 0 (inf: the published one-vote-per-hit), got {vote_temperature}"
            )
        self.tallies = tallies
        self.half_life_s = half_life_s
        self.top_k = top_k
        self.vote_temperature = float(vote_temperature)

    def _fail(self, context: grpc.ServicerContext, code: grpc.StatusCode, msg: str) -> None:
        ERRORS.labels(SERVICE, code.name).inc()
        context.abort(code, msg)

    def _run(self, method: str, context: grpc.ServicerContext, session_id: str, fn: Any) -> Any:
        if not session_id:
            self._fail(context, grpc.StatusCode.INVALID_ARGUMENT, "session_id is required")
        t0 = time.perf_counter()
        try:
            return fn()
        except TimeWentBackwards as e:
            self._fail(context, grpc.StatusCode.INVALID_ARGUMENT, f"session {session_id}: {e}")
        except ValueError as e:
            self._fail(context, grpc.StatusCode.INVALID_ARGUMENT, str(e))
        except (redis.ConnectionError, redis.TimeoutError) as e:
            self._fail(context, grpc.StatusCode.UNAVAILABLE, f"redis unavailable: {e}")
        finally:
            dt = time.perf_counter() - t0
            RPC_SECONDS.labels(SERVICE, method).observe(dt)
            log_event(log, method, level=logging.DEBUG, session=session_id, stage=method.lower(),
                      latency_ms=round(dt * 1000, 3))  # fmt: skip

    def Vote(self, request: pb.VoteRequest, context: grpc.ServicerContext) -> pb.VoteResponse:
        if not request.hits.hits:  # a silent window casts no vote (as the offline identifier)
            return self.Get(pb.GetRequest(session_id=request.session_id, top_k=request.top_k), context)
        votes, positions = votes_from_hits(request.hits.hits, self.vote_temperature)
        hl = request.half_life or self.half_life_s
        k = request.top_k or self.top_k
        st = self._run(
            "Vote", context, request.session_id,
            lambda: self.tallies.update(request.session_id, votes, request.t_seconds, hl, k, positions),
        )  # fmt: skip
        return state_to_pb(st)

    def VoteBatch(self, request: pb.VoteBatchRequest, context: grpc.ServicerContext) -> pb.VoteBatchResponse:
        """Every vote of the request in one Redis pipeline; per-vote errors go in its result."""
        updates: list[VoteUpdate | None] = []
        results = [pb.VoteResult() for _ in request.votes]
        seen: set[str] = set()
        for r, v in zip(results, request.votes):
            if not v.session_id or v.session_id in seen:
                r.code = grpc.StatusCode.INVALID_ARGUMENT.value[0]
                r.error = (
                    "session_id is required"
                    if not v.session_id
                    else f"session {v.session_id}: one vote per call"
                )
                updates.append(None)
                continue
            seen.add(v.session_id)
            votes, positions = votes_from_hits(v.hits.hits, self.vote_temperature)
            updates.append(VoteUpdate(v.session_id, votes, v.t_seconds, v.half_life or self.half_life_s,
                                      v.top_k or self.top_k, positions))  # fmt: skip
        todo = [u for u in updates if u is not None]
        t0 = time.perf_counter()
        try:
            states = iter(self.tallies.update_many(todo))
        except (redis.ConnectionError, redis.TimeoutError) as e:
            self._fail(context, grpc.StatusCode.UNAVAILABLE, f"redis unavailable: {e}")
        finally:
            RPC_SECONDS.labels(SERVICE, "VoteBatch").observe(time.perf_counter() - t0)
        for r, u in zip(results, updates):
            if u is None:
                continue
            st = next(states)
            if isinstance(st, TallyState):
                r.response.CopyFrom(state_to_pb(st))
            else:
                code = (
                    grpc.StatusCode.INVALID_ARGUMENT
                    if isinstance(st, ValueError)
                    else grpc.StatusCode.INTERNAL
                )
                r.code, r.error = code.value[0], f"session {u.session_id}: {st}"
                ERRORS.labels(SERVICE, code.name).inc()
        return pb.VoteBatchResponse(results=results)

    def Get(self, request: pb.GetRequest, context: grpc.ServicerContext) -> pb.VoteResponse:
        k = request.top_k or self.top_k
        st = self._run("Get", context, request.session_id, lambda: self.tallies.get(request.session_id, k))
        return state_to_pb(st)

    def Close(self, request: pb.CloseRequest, context: grpc.ServicerContext) -> pb.CloseResponse:
        existed = self._run(
            "Close", context, request.session_id, lambda: self.tallies.close(request.session_id)
        )
        return pb.CloseResponse(existed=existed)


def register(servicer: AggregatorServicer) -> Any:
    """``register(server)`` callback: the Aggregator servicer plus health and reflection."""

    def add(server: grpc.Server) -> None:
        pbg.add_AggregatorServicer_to_server(servicer, server)
        add_standard_services(server, [SERVICE_NAME])

    return add
