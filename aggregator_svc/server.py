"""The Aggregator gRPC servicer: each session's identification engine, its state in Redis.

A vote is one hop of the core engine (:class:`scoreid.identify.engine.SessionEngine`, the same one
``scoreid identify`` runs): the session's state is read from Redis (:class:`EngineStates`), the
window's hits vote into the tally, the candidates' score followers advance on the window's
embedding, the new state is written back by compare-and-set, and the answer — top-k with
positions, identity, confidence — is returned. ``VoteBatch`` does many sessions with one Redis
read and one write round trip. A vote with ``search_k`` carries only the window's embedding: the
aggregator searches the session's library for its neighbours itself (:class:`Searches`: exact
search on the library's hub-corrected vectors, the same :class:`~scoreid.search.exact.ExactIndex`
``scoreid identify`` runs, one search per library for a whole batch), so a window costs the encoder
one call instead of Index.Search and then Vote. Errors map to gRPC statuses: bad arguments (time backwards, a bad
embedding, a piece the library does not have) -> INVALID_ARGUMENT, an unknown library -> NOT_FOUND,
a concurrent writer -> ABORTED, a state that cannot be restored -> DATA_LOSS, Redis down ->
UNAVAILABLE; in a batch each vote gets its own.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import grpc
import numpy as np
import redis

from aggregator_svc.libraries import Libraries, UnknownLibrary
from aggregator_svc.store import EngineStates, Stored
from ops.grpc_server import add_standard_services, public_details
from ops.logs import log_event
from ops.metrics import ERRORS, RPC_SECONDS
from proto.scoreid.v1 import scoreid_pb2 as pb
from proto.scoreid.v1 import scoreid_pb2_grpc as pbg
from proto.tensor import from_tensor
from scoreid.identify.engine import EngineSettings, EngineStateError, SessionEngine, Update
from scoreid.library.store import Library, LibraryError
from scoreid.search.exact import ExactIndex

SERVICE = "aggregator"
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Aggregator"].full_name
log = logging.getLogger("scoreid.aggregator")
MAX_TOP_K = 50
MAX_HITS = 1000  #: neighbours per vote
MAX_BATCH = 1024  #: votes per VoteBatch
MAX_T_S = 1e7  #: audio time of a vote (s)
SESSION_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}\Z")
#: sessions whose engine is kept decoded in the process (skips decoding the blob when Redis still
#: holds the version this process wrote: the common case of one replica per session)
ENGINE_CACHE = 4096


class VoteError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def update_to_pb(u: Update | None, t_last: float | None, top_k: int, voting: int = 0) -> pb.VoteResponse:
    """The engine's answer as a VoteResponse (``None``: a session with no vote yet); ``voting``:
    the session's windows that voted so far (:attr:`SessionEngine.n_voting`)."""
    resp = pb.VoteResponse(voting=voting)
    if t_last is not None:
        resp.t_seconds = t_last
    if u is None:
        return resp
    resp.total = sum(v for _p, _s, v in u.ranking)
    for pid, score, votes in u.ranking[:top_k]:
        ps = pb.PieceScore(piece=pid, score=score, votes=votes)
        pos = u.positions.get(pid)
        if pos is not None:
            ps.position.CopyFrom(pos.to_message(pb.Position))
        resp.top.append(ps)
    if resp.top and resp.top[0].HasField("position"):
        resp.position.CopyFrom(resp.top[0].position)
    resp.identity = u.identity or ""
    resp.confidence = u.confidence
    return resp


def check_session_id(sid: str) -> None:
    if not SESSION_ID.match(sid):
        raise VoteError(
            grpc.StatusCode.INVALID_ARGUMENT,
            "session_id is required: 1-128 letters, digits, '.', '_', ':' or '-'",
        )


def check_vote(v: pb.VoteRequest) -> None:
    """Bounds of one vote's inputs (the engine checks the embedding and the pieces)."""
    if not (math.isfinite(v.t_seconds) and 0.0 <= v.t_seconds <= MAX_T_S):
        raise VoteError(grpc.StatusCode.INVALID_ARGUMENT, f"t_seconds must be within 0..{MAX_T_S:g}")
    if v.search_k > MAX_HITS:
        raise VoteError(grpc.StatusCode.INVALID_ARGUMENT, f"search_k must be <= {MAX_HITS}")
    if v.search_k and (v.hits.hits or not v.HasField("embedding")):
        raise VoteError(
            grpc.StatusCode.INVALID_ARGUMENT, "a vote with search_k carries the embedding and no hits"
        )
    if len(v.hits.hits) > MAX_HITS:
        raise VoteError(grpc.StatusCode.INVALID_ARGUMENT, f"at most {MAX_HITS} hits per vote")
    if any(not (-1.01 <= h.score <= 1.01) for h in v.hits.hits):  # also false for NaN
        raise VoteError(
            grpc.StatusCode.INVALID_ARGUMENT, "hit scores are cosine similarities: finite, within -1..1"
        )
    if not (math.isfinite(v.half_life) and v.half_life >= 0) or not (
        math.isfinite(v.hop_seconds) and v.hop_seconds >= 0
    ):
        raise VoteError(grpc.StatusCode.INVALID_ARGUMENT, "half_life and hop_seconds must be finite and >= 0")


class Searches:
    """The exact search of each open library, made once per library copy (a reopened library gets a
    new one); thread-safe."""

    def __init__(self) -> None:
        self._by_name: dict[str, tuple[Library, ExactIndex]] = {}
        self._lock = threading.Lock()

    def index(self, name: str, lib: Library) -> ExactIndex:
        with self._lock:
            have = self._by_name.get(name)
            if have is not None and have[0] is lib:
                return have[1]
        index = ExactIndex(lib.search_vectors)  # outside the lock: a large library takes a while
        with self._lock:
            self._by_name[name] = (lib, index)
        return index

    def search(
        self, name: str, lib: Library, embeddings: np.ndarray, k: int
    ) -> list[list[tuple[str, float]]]:
        """Each embedding's ``k`` nearest sheet windows as (piece id, similarity), best first."""
        return lib.nearest(self.index(name, lib), embeddings, k)


@dataclass
class Step:
    """One vote's outcome: the response, and the state to write (``None``: nothing changed)."""

    response: pb.VoteResponse
    state: bytes | None = None
    library: str = ""
    engine: SessionEngine | None = None  # the engine that made ``state`` (kept decoded once written)


class AggregatorServicer(pbg.AggregatorServicer):
    def __init__(
        self,
        states: EngineStates,
        libraries: Libraries,
        settings: EngineSettings | None = None,
        top_k: int = 5,
    ):
        """A new session's engine runs with ``settings`` (:meth:`EngineSettings.from_config`; the
        defaults when None), its hop and half-life replaced by the first vote's when it gives them."""
        self.settings = settings or EngineSettings()
        self.states = states
        self.libraries = libraries
        self.top_k = int(top_k)
        self._cache: OrderedDict[str, tuple[int, SessionEngine]] = OrderedDict()
        self._cache_lock = threading.Lock()
        self.searches = Searches()

    def _cached(self, sid: str, version: int, lib: Any) -> SessionEngine | None:
        with self._cache_lock:
            hit = self._cache.pop(sid, None)  # taken out: a concurrent vote of the session decodes its own
        if hit is not None and hit[0] == version and hit[1].library is lib:
            return hit[1]
        return None

    def _holds(self, sid: str, version: int) -> bool:
        """Whether this process holds ``version`` of the session decoded (its blob need not be read)."""
        with self._cache_lock:
            hit = self._cache.get(sid)
        return hit is not None and hit[0] == version

    def _keep(self, sid: str, version: int, eng: SessionEngine) -> None:
        with self._cache_lock:
            self._cache[sid] = (version, eng)
            self._cache.move_to_end(sid)
            while len(self._cache) > ENGINE_CACHE:
                self._cache.popitem(last=False)

    # ------------------------------------------------------------------ the engine step
    def _library(self, name: str, refresh: bool = False) -> Any:
        try:
            return self.libraries.get(name, refresh)
        except UnknownLibrary as e:
            raise VoteError(grpc.StatusCode.NOT_FOUND, str(e.args[0])) from None
        except (LibraryError, OSError) as e:
            raise VoteError(grpc.StatusCode.UNAVAILABLE, f"library {name!r} cannot be opened: {e}") from None

    def _engine(self, sid: str, stored: Stored, lib: Any) -> SessionEngine | None:
        """The session's engine against ``lib`` (decoded, or this process's copy); None: no session."""
        if not stored.exists:
            return None
        eng = self._cached(sid, stored.version, lib)
        if eng is not None:
            return eng
        blob = stored.state
        if blob is None:  # the blob was skipped for a cached copy that is gone now: read it
            fresh = self.states.get(sid)
            if fresh.version != stored.version or fresh.state is None:
                raise VoteError(
                    grpc.StatusCode.ABORTED, f"session {sid} was changed by another writer; vote not applied"
                )
            blob = fresh.state
        try:
            return SessionEngine.from_bytes(lib, blob)
        except EngineStateError as e:
            raise VoteError(grpc.StatusCode.DATA_LOSS, f"session {sid}: {e}") from None

    def _search(self, votes: Sequence[pb.VoteRequest], stored: Sequence[Stored]) -> dict[int, Any]:
        """The neighbours of every vote with ``search_k`` (by its index; a VoteError for a vote that
        cannot be searched): one search per library and k for the whole batch."""
        out: dict[int, Any] = {}
        groups: dict[tuple[str, int], list[tuple[int, np.ndarray]]] = {}
        for i, (v, st) in enumerate(zip(votes, stored)):
            if not v.search_k:
                continue
            try:
                check_vote(v)
                name = self._library_name(v.library, st)
                emb = from_tensor(v.embedding)
                if emb.size == 0 or emb.ndim > 2 or (emb.ndim == 2 and emb.shape[0] != 1):
                    raise VoteError(
                        grpc.StatusCode.INVALID_ARGUMENT, "the embedding must be one vector (1, D)"
                    )
                groups.setdefault((name, int(v.search_k)), []).append((i, emb.reshape(1, -1)))
            except VoteError as e:
                out[i] = e
            except ValueError as e:  # a malformed tensor
                out[i] = VoteError(grpc.StatusCode.INVALID_ARGUMENT, f"embedding: {e}")
        for (name, k), members in groups.items():
            try:
                lib = self._library(name)
            except VoteError as e:
                out.update({i: e for i, _ in members})
                continue
            dim = lib.vectors.shape[1]
            good = []
            for i, q in members:
                if q.shape[1] == dim and np.isfinite(q).all():
                    good.append((i, q))
                else:
                    out[i] = VoteError(
                        grpc.StatusCode.INVALID_ARGUMENT, f"the embedding must be {dim} finite numbers"
                    )
            if good:
                hits = self.searches.search(
                    name, lib, np.concatenate([q for _, q in good]).astype(np.float32), k
                )
                out.update({i: h for (i, _), h in zip(good, hits)})
        return out

    def _step(self, v: pb.VoteRequest, stored: Stored, searched: Any = None) -> Step:
        sid = v.session_id
        check_vote(v)
        top_k = self._top_k(v.top_k)
        library = self._library_name(v.library, stored)
        if isinstance(searched, VoteError):
            raise searched
        hits = searched if v.search_k else [(h.piece, float(h.score)) for h in v.hits.hits]
        if not hits and not stored.exists:  # silence before any vote: nothing to say yet
            return Step(update_to_pb(None, None, top_k))
        lib = self._library(library)
        if any(p not in lib.rows for p, _ in hits):  # a piece ingested since this copy was opened
            lib = self._library(library, refresh=True)
        eng = self._engine(sid, stored, lib)
        if not hits:  # a silent window casts no vote (as the offline identifier)
            assert eng is not None
            try:
                u = eng.silent(v.t_seconds)
                self._keep(sid, stored.version, eng)  # unchanged
                return Step(update_to_pb(u, eng.t_last, top_k, eng.n_voting))
            except ValueError as e:
                raise VoteError(grpc.StatusCode.INVALID_ARGUMENT, f"session {sid}: {e}") from None
        if eng is None:
            s = self.settings
            try:
                settings = replace(s, hop_s=v.hop_seconds or s.hop_s, half_life=v.half_life or s.half_life)
            except ValueError as e:
                raise VoteError(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from None
            eng = SessionEngine(lib, settings)
        try:
            emb = from_tensor(v.embedding) if v.HasField("embedding") else np.zeros(0, np.float32)
            u = eng.vote(v.t_seconds, emb, hits)
        except ValueError as e:
            raise VoteError(grpc.StatusCode.INVALID_ARGUMENT, f"session {sid}: {e}") from None
        return Step(update_to_pb(u, eng.t_last, top_k, eng.n_voting), eng.to_bytes(), library, eng)

    def _library_name(self, requested: str, stored: Stored) -> str:
        try:
            name = self.libraries.name_of(requested)
        except UnknownLibrary as e:
            raise VoteError(grpc.StatusCode.NOT_FOUND, str(e.args[0])) from None
        if stored.exists and stored.library and stored.library != name:
            raise VoteError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"the session runs against library {stored.library!r}, not {name!r}",
            )
        return name

    def _top_k(self, k: int) -> int:
        k = int(k) or self.top_k
        if k > MAX_TOP_K:
            raise VoteError(grpc.StatusCode.INVALID_ARGUMENT, f"top_k must be <= {MAX_TOP_K}, got {k}")
        return k

    # ------------------------------------------------------------------ RPCs
    def _fail(self, context: grpc.ServicerContext, code: grpc.StatusCode, msg: str) -> None:
        ERRORS.labels(SERVICE, code.name).inc()
        if code != grpc.StatusCode.INVALID_ARGUMENT:  # the log keeps what the caller does not see
            log_event(log, "request failed", level=logging.WARNING, code=code.name, error=msg)
        context.abort(code, public_details(msg))

    def _votes(self, votes: Sequence[pb.VoteRequest]) -> list[pb.VoteResponse | VoteError]:
        """Many sessions' votes: one Redis read, the engine steps, one compare-and-set write."""
        out: list[pb.VoteResponse | VoteError] = []
        stored = self.states.get_many([v.session_id for v in votes], have=self._holds)
        steps: list[Step | VoteError] = []
        searched = self._search(votes, stored)
        for i, (v, st) in enumerate(zip(votes, stored)):
            try:
                steps.append(self._step(v, st, searched.get(i)))
            except VoteError as e:
                steps.append(e)
        writes = [(i, s) for i, s in enumerate(steps) if isinstance(s, Step) and s.state is not None]
        written = self.states.put_many(
            [(votes[i].session_id, stored[i].version, s.state, s.library) for i, s in writes]  # type: ignore[misc]
        )
        conflicted = {i for (i, _s), ok in zip(writes, written) if not ok}
        for (i, w), ok in zip(writes, written):
            if ok and w.engine is not None:
                self._keep(votes[i].session_id, stored[i].version + 1, w.engine)
        for i, step in enumerate(steps):
            if i in conflicted:
                out.append(
                    VoteError(
                        grpc.StatusCode.ABORTED,
                        f"session {votes[i].session_id} was changed by another writer; vote not applied",
                    )
                )
            else:
                out.append(step.response if isinstance(step, Step) else step)
        return out

    def _timed(self, method: str, context: grpc.ServicerContext, fn: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn()
        except (redis.ConnectionError, redis.TimeoutError) as e:
            self._fail(context, grpc.StatusCode.UNAVAILABLE, f"redis unavailable: {e}")
        except redis.ResponseError as e:
            if isinstance(e, redis.exceptions.OutOfMemoryError) or "maxmemory" in str(e):  # noeviction
                self._fail(
                    context,
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    "the session store is full (Redis maxmemory): the vote is not answered; live sessions are kept",
                )
            raise
        finally:
            dt = time.perf_counter() - t0
            RPC_SECONDS.labels(SERVICE, method).observe(dt)
            log_event(log, method, level=logging.DEBUG, stage=method.lower(), latency_ms=round(dt * 1000, 3))

    def Vote(self, request: pb.VoteRequest, context: grpc.ServicerContext) -> pb.VoteResponse:
        try:
            check_session_id(request.session_id)
        except VoteError as e:
            self._fail(context, e.code, e.message)
        (r,) = self._timed("Vote", context, lambda: self._votes([request]))
        if isinstance(r, VoteError):
            self._fail(context, r.code, r.message)
        return r

    def VoteBatch(self, request: pb.VoteBatchRequest, context: grpc.ServicerContext) -> pb.VoteBatchResponse:
        """Every vote of the request with one Redis read and one write; per-vote errors in its result."""
        if len(request.votes) > MAX_BATCH:
            self._fail(context, grpc.StatusCode.INVALID_ARGUMENT, f"at most {MAX_BATCH} votes per VoteBatch")
        results = [pb.VoteResult() for _ in request.votes]
        todo: list[int] = []
        seen: set[str] = set()
        for i, (r, v) in enumerate(zip(results, request.votes)):
            try:
                check_session_id(v.session_id)
            except VoteError as e:
                r.code, r.error = e.code.value[0], e.message
                continue
            if v.session_id in seen:
                r.code = grpc.StatusCode.INVALID_ARGUMENT.value[0]
                r.error = f"session {v.session_id}: one vote per call"
                continue
            seen.add(v.session_id)
            todo.append(i)
        answers = self._timed("VoteBatch", context, lambda: self._votes([request.votes[i] for i in todo]))
        for i, a in zip(todo, answers):
            if isinstance(a, VoteError):
                results[i].code, results[i].error = a.code.value[0], a.message
                ERRORS.labels(SERVICE, a.code.name).inc()
            else:
                results[i].response.CopyFrom(a)
        return pb.VoteBatchResponse(results=results)

    def Get(self, request: pb.GetRequest, context: grpc.ServicerContext) -> pb.VoteResponse:
        try:
            check_session_id(request.session_id)
        except VoteError as e:
            self._fail(context, e.code, e.message)

        def get() -> pb.VoteResponse:
            st = self.states.get(request.session_id)
            top_k = self._top_k(request.top_k)
            eng = None if not st.exists else self._engine(request.session_id, st, self._library(st.library))
            if eng is None or eng.t_last is None:
                return update_to_pb(None, None, top_k)
            return update_to_pb(eng.snapshot(eng.t_last), eng.t_last, top_k, eng.n_voting)

        try:
            return self._timed("Get", context, get)  # type: ignore[no-any-return]
        except VoteError as e:
            self._fail(context, e.code, e.message)
            raise

    def Close(self, request: pb.CloseRequest, context: grpc.ServicerContext) -> pb.CloseResponse:
        try:
            check_session_id(request.session_id)
        except VoteError as e:
            self._fail(context, e.code, e.message)
        with self._cache_lock:
            self._cache.pop(request.session_id, None)
        existed = self._timed("Close", context, lambda: self.states.close(request.session_id))
        return pb.CloseResponse(existed=bool(existed))


def register(servicer: AggregatorServicer) -> Any:
    """``register(server)`` callback of a ``grpc.aio`` server: the Aggregator servicer
    (blocking handlers, run in the server's thread pool) plus health and reflection."""

    async def add(server: grpc.aio.Server) -> None:
        pbg.add_AggregatorServicer_to_server(servicer, server)
        await add_standard_services(server, [SERVICE_NAME])

    return add
