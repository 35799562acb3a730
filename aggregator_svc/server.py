"""The Aggregator gRPC servicer: Vote / Get / Close over :class:`RedisTallies`.

Each hit of a window votes 1 for its piece (``votes_from_hits``); the best hit of each piece
in the window becomes that piece's followed position. Errors map to gRPC statuses: bad
arguments -> INVALID_ARGUMENT, Redis down -> UNAVAILABLE.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import grpc
import redis

from aggregator_svc.store import RedisTallies, TallyState, TimeWentBackwards
from proto.scoreid.v1 import scoreid_pb2 as pb
from proto.scoreid.v1 import scoreid_pb2_grpc as pbg
from scoreid.serve.grpc_server import add_standard_services
from scoreid.serve.logs import log_event
from scoreid.serve.metrics import ERRORS, RPC_SECONDS

SERVICE = "aggregator"
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Aggregator"].full_name
log = logging.getLogger("scoreid.aggregator")


def votes_from_hits(hits: Any) -> tuple[dict[str, float], dict[str, dict[str, Any]]]:
    """One vote per hit for its piece; the best (first) hit of each piece is its position."""
    votes: dict[str, float] = {}
    positions: dict[str, dict[str, Any]] = {}
    for h in hits:
        votes[h.piece] = votes.get(h.piece, 0.0) + 1.0
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
    def __init__(self, tallies: RedisTallies, half_life_s: float = 20.0, top_k: int = 5):
        self.tallies = tallies
        self.half_life_s = half_life_s
        self.top_k = top_k

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
        votes, positions = votes_from_hits(request.hits.hits)
        hl = request.half_life or self.half_life_s
        k = request.top_k or self.top_k
        st = self._run(
            "Vote", context, request.session_id,
            lambda: self.tallies.update(request.session_id, votes, request.t_seconds, hl, k, positions),
        )  # fmt: skip
        return state_to_pb(st)

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
