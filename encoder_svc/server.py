"""The client-facing Identify service (and the internal Embedder): stream in, identifications out.

Per stream: validate the options, admit the session (per-client and global caps), then for
every chunk run :class:`~encoder_svc.audio_stream.AudioStream` (the core's hop windows and silence
rule); each sounding window goes through the shared :class:`~encoder_svc.batcher.DynamicBatcher`
(encode a batch with the audio encoder, one Index.Search per library for the batch, then one
Aggregator.VoteBatch, where each session's engine — tally, score follower, confidence — takes its
hop), and an ``Identification`` goes back: the same answer ``scoreid identify`` gives offline. On half-close the last window is processed and the final answer is
sent with ``final = true`` and the session's tallies are deleted.

Slots are not free: the options must arrive within ``options_timeout_s``, then a message at least
every ``idle_timeout_s`` (:class:`~encoder_svc.watch.StreamWatch` ends a stream that stalls);
streams still without options are capped apart from sessions, and the per-client cap keys on the
caller's named token (``encoder.clients_file``) or else its address.

The per-stream logic (:meth:`IdentifyServicer.session`) is written once as a generator of
effects (read a message, send an identification, wait for a window's batch, make a blocking
internal call) and run by one of two fronts (``encoder.server``): ``threads``, this module's
``Stream`` in a server thread per stream, or ``asyncio`` (``encoder_svc.aio_server``), one
coroutine per stream on an event loop; a client sees the same either way.

Errors are gRPC statuses for that stream only: bad input -> INVALID_ARGUMENT, session caps ->
RESOURCE_EXHAUSTED, session too long -> DEADLINE_EXCEEDED, index or aggregator down ->
UNAVAILABLE (the tallies stay in Redis for the TTL; the client can resume with
``SessionOptions.resume_session``).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
import numpy as np

from encoder_svc.audio_stream import AudioStream, StreamError, StreamOptions, Window
from encoder_svc.batcher import BatcherClosed, DynamicBatcher
from encoder_svc.watch import StreamWatch, Watched, cancel_context
from ops.grpc_server import add_standard_services, bearer_of, internal_channel, public_details
from ops.logs import log_event
from ops.metrics import ACTIVE_SESSIONS, ERRORS, SESSIONS, STAGE_SECONDS, UPDATES
from proto.scoreid.v1 import scoreid_pb2 as pb
from proto.scoreid.v1 import scoreid_pb2_grpc as pbg
from proto.tensor import from_tensor, to_tensor
from scoreid import contract as C
from scoreid.identify.engine import DEFAULT_HOP_S, TOP_K
from scoreid.tensors import audio_to_network

SERVICE = "encoder"
SERVICE_NAMES = [pb.DESCRIPTOR.services_by_name[n].full_name for n in ("Identify", "Embedder")]
log = logging.getLogger("scoreid.encoder")


class ServedEncoder(Protocol):
    """What the service needs of ``scoreid.inference.Encoders``."""

    contract: C.Contract

    def embed_audio(self, x: Any) -> np.ndarray: ...


@dataclass
class EncoderSettings:
    hop_s: float = DEFAULT_HOP_S
    top_k: int = 5
    k: int = TOP_K
    max_batch: int = 64
    max_wait_ms: float = 5.0
    batch_workers: int = 2
    max_chunk_seconds: float = 10.0
    max_session_s: float = 3600.0
    max_sessions_per_client: int = 16
    max_sessions: int = 1000
    max_pending_streams: int = 32  #: streams that have not sent their SessionOptions yet
    options_timeout_s: float = 5.0  #: the first message must arrive within this
    idle_timeout_s: float = 30.0  #: then a message at least this often
    rpc_timeout_s: float = 5.0
    session_key: bytes = b""  #: HMAC key of resume tokens (empty: random, this process only)
    clients: dict[str, str] | None = None  #: bearer token -> client name (the per-client cap's key)

    @classmethod
    def from_config(cls, enc: dict[str, Any]) -> EncoderSettings:
        from ops.config import client_tokens, secret

        kw = {k: enc[k] for k in cls.__dataclass_fields__ if k in enc and k not in ("session_key", "clients")}
        return cls(**kw, session_key=secret(enc, "session_key").encode(), clients=client_tokens(enc))


def model_sha256(encoder: Any) -> str:
    """The fingerprint libraries record for the model (empty when the encoder has no model dir)."""
    from scoreid.tensors import model_fingerprint

    d = getattr(encoder, "model_dir", None)
    return model_fingerprint(d) if d is not None and (d / "manifest.json").is_file() else ""


class StreamAbort(Exception):
    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _rpc_abort(what: str, e: grpc.RpcError) -> StreamAbort:
    code = e.code() if hasattr(e, "code") else grpc.StatusCode.UNKNOWN
    details = e.details() if hasattr(e, "details") else str(e)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return StreamAbort(grpc.StatusCode.UNAVAILABLE, f"{what} unavailable: {details}")
    return StreamAbort(code, f"{what}: {details}")


STATUS_BY_CODE = {c.value[0]: c for c in grpc.StatusCode}


class BadWindow(ValueError):
    """A window of one session that cannot be searched (non-finite features)."""


@dataclass
class WindowJob:
    """One non-silent window of one session, as submitted to the batcher."""

    excerpt: np.ndarray  # (frames, bins)
    library: str
    k: int  # neighbours to retrieve
    session_id: str
    t: float  # audio time of the window (session time)
    top_k: int  # pieces to return
    hop_s: float  # the session's hop (the engine's follower needs it)


class Pipeline:
    """The batch function: encode windows, search each library once, then one VoteBatch for all.

    One aggregator call per batch instead of one per window: the aggregator runs the batch's
    votes in one Redis pipeline (BENCHMARKS.md "Streaming capacity").
    """

    def __init__(self, encoder: ServedEncoder, index: pbg.IndexStub, aggregator: pbg.AggregatorStub,
                 timeout_s: float):  # fmt: skip
        self.encoder = encoder
        self.index = index
        self.aggregator = aggregator
        self.timeout_s = timeout_s

    def __call__(self, items: Sequence[WindowJob]) -> list[tuple[Any, Any, dict[str, float]]]:
        """Per item: (HitList or the index's grpc.RpcError, VoteResult or the aggregator's grpc.RpcError, stamps)."""
        t0, c0 = time.perf_counter(), time.thread_time()
        emb = self.encoder.embed_audio(audio_to_network(np.stack([it.excerpt for it in items])))
        finite = np.isfinite(emb).all(axis=1)  # a bad window ends only its own session
        t1 = time.perf_counter()
        STAGE_SECONDS.labels(SERVICE, "encode").observe(t1 - t0)
        # CPU time of this thread in the encoder call: far below `encode` = waiting for a core or the GIL
        STAGE_SECONDS.labels(SERVICE, "encode_cpu").observe(time.thread_time() - c0)
        hits: list[Any] = [None] * len(items)
        groups: dict[tuple[str, int], list[int]] = {}
        for i, it in enumerate(items):
            if not finite[i]:
                hits[i] = BadWindow("the audio gave non-finite features; the session is ended")
                continue
            groups.setdefault((it.library, it.k), []).append(i)
        for (lib, k), idx in groups.items():
            try:
                resp = self.index.Search(pb.SearchRequest(library=lib, queries=to_tensor(emb[idx]), k=k),
                                         timeout=self.timeout_s)  # fmt: skip
            except grpc.RpcError as e:  # only the sessions of this library see the error
                for i in idx:
                    hits[i] = e
                continue
            for i, hl in zip(idx, resp.results):
                hits[i] = hl
        t2 = time.perf_counter()
        STAGE_SECONDS.labels(SERVICE, "search").observe(t2 - t1)
        votes: list[Any] = [None] * len(items)
        todo = [i for i, hl in enumerate(hits) if not isinstance(hl, grpc.RpcError | BadWindow)]
        if todo:
            req = pb.VoteBatchRequest(votes=[vote_request(items[i], hits[i], emb[i : i + 1]) for i in todo])
            try:
                results: Sequence[Any] = self.aggregator.VoteBatch(req, timeout=self.timeout_s).results
            except grpc.RpcError as e:
                results = [e] * len(todo)
            for i, r in zip(todo, results):
                votes[i] = r
        t3 = time.perf_counter()
        STAGE_SECONDS.labels(SERVICE, "vote_batch").observe(t3 - t2)
        stamps = {"encode": (t1 - t0) * 1000, "search": (t2 - t1) * 1000, "vote": (t3 - t2) * 1000,
                  "batch": float(len(items))}  # fmt: skip
        return [(hl, v, stamps) for hl, v in zip(hits, votes)]


def vote_request(job: WindowJob, hits: Any, emb: np.ndarray | None) -> pb.VoteRequest:
    """One hop of the session's engine: the window's neighbours and embedding (none: silence)."""
    req = pb.VoteRequest(session_id=job.session_id, t_seconds=job.t, top_k=job.top_k, library=job.library,
                         hop_seconds=job.hop_s, hits=hits if hits is not None else pb.HitList())  # fmt: skip
    if emb is not None:
        req.embedding.CopyFrom(to_tensor(np.ascontiguousarray(emb, np.float32)))
    return req


def identification(sid: str, seq: int, seconds: float, t: float, final: bool, vote: pb.VoteResponse,
                   titles: dict[str, str]) -> pb.Identification:  # fmt: skip
    """The client's message from the engine's answer (top-k with positions, identity, confidence)
    for the window at audio time ``t``, after ``seconds`` of the session's audio."""
    msg = pb.Identification(session_id=sid, seq=seq, seconds=seconds, t_seconds=t, final=final,
                            identity=vote.identity, confidence=vote.confidence)  # fmt: skip
    for e in vote.top:
        ps = msg.top.add(piece=e.piece, title=titles.get(e.piece, ""), score=e.score, votes=e.votes)
        if e.HasField("position"):
            ps.position.CopyFrom(e.position)
    if vote.HasField("position"):
        msg.position.CopyFrom(vote.position)
    return msg


class SessionGate:
    """Caps on open streams: those still waiting for their options (``pending``), and sessions —
    in all and per client. A stream over a cap is refused at once, so the server's concurrent-RPC
    limit (sessions + pending + a reserve) always leaves room for health checks."""

    def __init__(self, per_client: int, total: int, pending: int = 32):
        self.per_client, self.total, self.max_pending = per_client, total, pending
        self.by_client: Counter[str] = Counter()
        self.pending = 0
        self.lock = threading.Lock()

    def enter(self) -> None:
        """A new stream, before its options: refused when ``pending`` streams already wait."""
        with self.lock:
            if self.pending >= self.max_pending:
                raise StreamAbort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                  f"server has {self.max_pending} streams waiting for their options (the limit)")  # fmt: skip
            self.pending += 1

    def entered(self) -> None:
        """The stream's options arrived (or it ended before): it no longer counts as pending."""
        with self.lock:
            self.pending -= 1

    def admit(self, client: str) -> None:
        with self.lock:
            if sum(self.by_client.values()) >= self.total:
                raise StreamAbort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED, f"server is at its limit of {self.total} sessions"
                )
            if self.by_client[client] >= self.per_client:
                raise StreamAbort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                  f"client {client} already has {self.per_client} open sessions (the limit)")  # fmt: skip
            self.by_client[client] += 1

    def release(self, client: str) -> None:
        with self.lock:
            self.by_client[client] -= 1
            if self.by_client[client] <= 0:
                del self.by_client[client]

    @property
    def active(self) -> int:
        with self.lock:
            return sum(self.by_client.values())


def client_of(context: grpc.ServicerContext, clients: dict[str, str] | None = None) -> str:
    """Who the caller is, for the per-client cap: the name of its bearer token when named client
    tokens are configured (``encoder.clients_file``), else its host (``ipv4:127.0.0.1:5555`` ->
    ``127.0.0.1``) — every user behind one proxy then shares one host's cap."""
    if clients and (got := bearer_of(context.invocation_metadata())):
        for token, name in clients.items():
            if hmac.compare_digest(got.encode(), token.encode()):
                return f"client:{name}"
    peer = context.peer() or "unknown"
    kind, _, rest = peer.partition(":")
    if kind in ("ipv4", "ipv6"):
        return rest.rsplit(":", 1)[0]
    return peer


class StreamGone(Exception):
    """The client's stream broke off: the client went away, or the watch ended the stream."""


class Read:
    """Effect: the client's next message (the session gets it, or ``None`` once the client half-closed)."""


READ = Read()


@dataclass(frozen=True)
class Send:
    """Effect: send ``msg`` to the client."""

    msg: pb.Identification


@dataclass(frozen=True)
class Call:
    """Effect: a blocking call (an internal unary RPC); the session gets its result or its exception."""

    fn: Callable[[], Any]


#: What a session asks of its front. A ``Future`` is a window in the batcher: the session gets the
#: future's result (or its exception).
Effect = Read | Send | Call | Future
Session = Generator[Effect, Any, StreamAbort | None]


class Driven:
    """A session as a front drives it: :meth:`advance` with what the last effect gave (a reply or an
    exception) returns the next effect, or ``None`` once the session has ended; then ``status`` is
    the status to end the stream with (``None``: it ended well, or was ended already)."""

    def __init__(self, session: Session):
        self.session = session
        self.status: StreamAbort | None = None

    def advance(self, reply: Any = None, error: BaseException | None = None) -> Effect | None:
        try:
            return self.session.throw(error) if error is not None else self.session.send(reply)
        except StopIteration as end:
            self.status = end.value
            return None

    def close(self) -> None:
        """End the session where it stands (its gate place and watch are released)."""
        self.session.close()


class IdentifyServicer(pbg.IdentifyServicer):
    """The Identify service with the threaded front: ``Stream`` runs in a server thread per stream.

    The per-stream logic is :meth:`session`, a generator of effects — read the next message, send
    an identification, wait for a window's batch, make a blocking internal call — written once for
    both fronts: :meth:`Stream` performs each effect blocking in its own thread, the asyncio front
    (``encoder_svc.aio_server``) awaits it on the event loop."""

    def __init__(self, encoder: ServedEncoder, index_address: str, aggregator_address: str,
                 settings: EncoderSettings | None = None, internal_token: str = ""):  # fmt: skip
        """``internal_token``: the credential the index and the aggregator require (``internal.token``)."""
        self.encoder = encoder
        self.s = settings or EncoderSettings()
        self.frames = encoder.contract.audio_window_frames
        self._channels = [internal_channel(index_address, internal_token),
                          internal_channel(aggregator_address, internal_token)]  # fmt: skip
        self.index = pbg.IndexStub(self._channels[0])
        self.aggregator = pbg.AggregatorStub(self._channels[1])
        self.batcher = DynamicBatcher(Pipeline(encoder, self.index, self.aggregator, self.s.rpc_timeout_s),
                                      self.s.max_batch, self.s.max_wait_ms / 1000.0, SERVICE,
                                      self.s.batch_workers)  # fmt: skip
        self.gate = SessionGate(
            self.s.max_sessions_per_client, self.s.max_sessions, self.s.max_pending_streams
        )
        self.watch = StreamWatch()
        self._titles: dict[str, dict[str, str]] = {}
        self.model_sha256 = model_sha256(encoder)
        self._session_key = self.s.session_key or secrets.token_bytes(32)

    def resume_token(self, sid: str) -> str:
        """The secret that resumes session ``sid``: only its owner received it."""
        return hmac.new(self._session_key, sid.encode(), hashlib.sha256).hexdigest()

    def close(self) -> None:
        self.watch.stop()
        self.batcher.stop()
        for ch in self._channels:
            ch.close()

    # ------------------------------------------------------------------ helpers
    def titles(self, library: str) -> Generator[Effect, Any, dict[str, str]]:
        """The library's titles; refuses a library embedded with another model than this encoder's."""
        if library not in self._titles:
            try:
                info = yield Call(lambda: self.index.Info(pb.InfoRequest(library=library),
                                                          timeout=self.s.rpc_timeout_s))  # fmt: skip
            except grpc.RpcError as e:
                raise _rpc_abort("index", e) from None
            li = info.libraries[0] if info.libraries else pb.LibraryInfo()
            if li.model_sha256 and self.model_sha256 and li.model_sha256 != self.model_sha256:
                raise StreamAbort(grpc.StatusCode.FAILED_PRECONDITION,
                                  f"library {li.name!r} was embedded with another model than the encoder serves; "
                                  "rebuild the library with the encoder's model")  # fmt: skip
            self._titles[library] = dict(li.titles)
        return self._titles[library]

    def options(self, first: pb.StreamRequest | None) -> StreamOptions:
        if first is None:
            raise StreamAbort(
                grpc.StatusCode.INVALID_ARGUMENT, "empty stream: the first message must be SessionOptions"
            )
        if first.WhichOneof("msg") != "options":
            raise StreamAbort(grpc.StatusCode.INVALID_ARGUMENT,
                              "the first message must be SessionOptions (got audio before options)")  # fmt: skip
        o = first.options
        try:
            return StreamOptions.validate(o.sample_rate, o.encoding, o.hop_seconds, o.top_k, o.library,
                                          self.s.hop_s, self.s.top_k)  # fmt: skip
        except StreamError as e:
            raise StreamAbort(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from None

    def identify(self, sid: str, seq: int, opts: StreamOptions, w: Window, stream: AudioStream,
                 t_chunk: float, final: bool) -> Generator[Effect, Any, pb.Identification]:  # fmt: skip
        stamps = dict(stream.stamps)
        if not np.isfinite(w.excerpt).all():  # checked before it can join (and fail) a shared batch
            raise StreamAbort(
                grpc.StatusCode.INVALID_ARGUMENT, "the audio gave non-finite features; the session is ended"
            )
        job = WindowJob(w.excerpt, opts.library, self.s.k, sid, w.t, opts.top_k, opts.hop_s)
        if w.silent:  # silence casts no vote (as the offline identifier)
            t0 = time.perf_counter()
            try:
                vote = yield Call(lambda: self.aggregator.Vote(vote_request(job, None, None),
                                                               timeout=self.s.rpc_timeout_s))  # fmt: skip
            except grpc.RpcError as e:
                raise _rpc_abort("aggregator", e) from None
            stamps["vote"] = (time.perf_counter() - t0) * 1000
        else:
            try:
                (hl, result, bstamps), wait = yield self.batcher.submit(job)
            except BatcherClosed as e:
                raise StreamAbort(grpc.StatusCode.UNAVAILABLE, str(e)) from None
            if isinstance(hl, BadWindow):
                raise StreamAbort(grpc.StatusCode.INVALID_ARGUMENT, str(hl))
            if isinstance(hl, grpc.RpcError):
                raise _rpc_abort("index", hl)
            if isinstance(result, grpc.RpcError):
                raise _rpc_abort("aggregator", result)
            if result.code != 0:
                raise StreamAbort(STATUS_BY_CODE.get(result.code, grpc.StatusCode.UNKNOWN), result.error)
            vote = result.response
            stamps.update(bstamps)
            stamps["queue_wait"] = wait * 1000
        STAGE_SECONDS.labels(SERVICE, "vote").observe(stamps["vote"] / 1000)
        stamps["total"] = (time.perf_counter() - t_chunk) * 1000
        STAGE_SECONDS.labels(SERVICE, "total").observe(stamps["total"] / 1000)
        titles = yield from self.titles(opts.library)
        if any(t.piece not in titles for t in vote.top):  # a piece ingested since: refresh once
            self._titles.pop(opts.library, None)
            titles = yield from self.titles(opts.library)
        msg = identification(sid, seq, stream.session_seconds, w.t, final, vote, titles)
        for name, ms in stamps.items():
            msg.latency_ms[name] = ms
        UPDATES.labels(SERVICE).inc()
        log_event(log, "update", level=logging.DEBUG, session=sid, seq=seq, stage="total",
                  latency_ms=round(stamps["total"], 3), top=msg.top[0].piece if msg.top else "")  # fmt: skip
        return msg

    # ------------------------------------------------------------------ the RPC
    def Stream(
        self, request_iterator: Iterator[pb.StreamRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.Identification]:
        """The threaded front: this server thread performs the session's effects, blocking."""
        driven = Driven(self.session(client_of(context, self.s.clients), cancel_context(context)))
        reply: Any = None
        error: BaseException | None = None
        try:
            while (effect := driven.advance(reply, error)) is not None:
                reply, error = None, None
                if isinstance(effect, Send):
                    yield effect.msg
                    continue
                try:
                    reply = self._perform(effect, request_iterator)
                except Exception as e:  # noqa: BLE001 - back to the session, which handles it or ends with it
                    error = e
        finally:
            driven.close()
        if driven.status is not None:
            context.abort(driven.status.code, public_details(driven.status.message))

    @staticmethod
    def _perform(effect: Effect, requests: Iterator[pb.StreamRequest]) -> Any:
        if isinstance(effect, Read):
            try:
                return next(requests, None)
            except grpc.RpcError:  # the client went away, or the watch cancelled the stream
                raise StreamGone() from None
        if isinstance(effect, Call):
            return effect.fn()
        assert isinstance(effect, Future)
        return effect.result()

    def session(self, client: str, cancel: Callable[[Watched], None]) -> Session:
        """One Stream call from its first message to its end, as effects its front performs (see the
        class text); ``cancel`` is how the watch ends this stream. Returns the status to end the
        stream with: a :class:`StreamAbort` (``None``: the session ended well, or the stream broke off)."""
        sid = ""
        admitted = pending = False
        clean_end = False
        watch = self.watch.open(cancel, self.s.options_timeout_s,
                                f"no SessionOptions within {self.s.options_timeout_s:g} s of the stream's start")  # fmt: skip
        try:
            self.gate.enter()
            pending = True
            first = yield READ
            self.gate.entered()
            pending = False
            opts = self.options(first)
            self.gate.admit(client)
            admitted = True
            started = time.monotonic()
            self.watch.extend(watch, self.s.idle_timeout_s, self._idle_reason, started + self.s.max_session_s)
            SESSIONS.labels(SERVICE).inc()
            ACTIVE_SESSIONS.labels(SERVICE).set(self.gate.active)
            yield from self.titles(opts.library)  # an unknown library fails here, before any audio
            sid, t_offset = (
                (yield from self.resume(first.options.resume_session, first.options.resume_token))
                if first.options.resume_session
                else (uuid.uuid4().hex, 0.0)
            )
            yield from self._session(opts, sid, t_offset, started, watch)
            clean_end = True
        except StreamAbort as e:
            ERRORS.labels(SERVICE, e.code.name).inc()
            log_event(log, "stream error", level=logging.WARNING, session=sid, client=client, code=e.code.name,
                      error=e.message)  # fmt: skip
            return e
        except StreamGone:  # reading the client's stream failed: the client went away, or the watch ended it
            if watch.expired:
                ERRORS.labels(SERVICE, "DEADLINE_EXCEEDED").inc()
                log_event(log, "stream timed out", level=logging.WARNING, session=sid, client=client,
                          error=watch.expired)  # fmt: skip
            else:
                ERRORS.labels(SERVICE, "CANCELLED").inc()
                log_event(log, "client vanished", level=logging.WARNING, session=sid, client=client)
        finally:
            self.watch.close(watch)
            if pending:
                self.gate.entered()
            if admitted:
                self.gate.release(client)
                ACTIVE_SESSIONS.labels(SERVICE).set(self.gate.active)
        if clean_end and sid:
            try:
                yield Call(lambda: self.aggregator.Close(pb.CloseRequest(session_id=sid),
                                                         timeout=self.s.rpc_timeout_s))  # fmt: skip
            except (grpc.RpcError, StreamGone):
                pass  # the TTL removes it
        return None

    def resume(self, sid: str, token: str) -> Generator[Effect, Any, tuple[str, float]]:
        """Continue a session kept in Redis: its id and the audio time of its last vote. Only with
        the session's resume token (the id alone is not a secret)."""
        if not hmac.compare_digest(token.encode(), self.resume_token(sid).encode()):
            raise StreamAbort(grpc.StatusCode.PERMISSION_DENIED,
                              "resuming a session needs its resume_token (sent in its first Identification)")  # fmt: skip
        try:
            st = yield Call(lambda: self.aggregator.Get(pb.GetRequest(session_id=sid, top_k=1),
                                                        timeout=self.s.rpc_timeout_s))  # fmt: skip
        except grpc.RpcError as e:
            raise _rpc_abort("aggregator", e) from None
        if not st.top and st.t_seconds == 0:
            raise StreamAbort(
                grpc.StatusCode.NOT_FOUND, f"session {sid} is unknown or expired; start a new one"
            )
        return sid, st.t_seconds

    @property
    def _idle_reason(self) -> str:
        return f"no audio for {self.s.idle_timeout_s:g} s: the stream is closed"

    def _session(self, opts: StreamOptions, sid: str, t_offset: float, started: float,
                 watch: Watched) -> Generator[Effect, Any, None]:  # fmt: skip
        stream = AudioStream(opts, self.frames, t_offset, self.s.max_chunk_seconds)
        seq = 0
        log_event(
            log, "session start", session=sid, rate=opts.sample_rate, hop_s=opts.hop_s, library=opts.library
        )
        while (req := (yield READ)) is not None:
            self.watch.extend(watch, self.s.idle_timeout_s, self._idle_reason, started + self.s.max_session_s)
            t_chunk = time.perf_counter()
            if time.monotonic() - started > self.s.max_session_s:
                raise StreamAbort(grpc.StatusCode.DEADLINE_EXCEEDED,
                                  f"session exceeded the maximum duration of {self.s.max_session_s:g} s")  # fmt: skip
            kind = req.WhichOneof("msg")
            if kind != "audio":
                raise StreamAbort(grpc.StatusCode.INVALID_ARGUMENT,
                                  "SessionOptions may be sent only once, as the first message" if kind
                                  else "empty StreamRequest (neither options nor audio)")  # fmt: skip
            try:
                windows = stream.push(req.audio.data)
            except StreamError as e:
                raise StreamAbort(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from None
            STAGE_SECONDS.labels(SERVICE, "resample").observe(stream.stamps["resample"] / 1000)
            STAGE_SECONDS.labels(SERVICE, "spectrogram").observe(stream.stamps["spectrogram"] / 1000)
            seq = yield from self._answer(sid, seq, opts, windows, stream, t_chunk, final=False)
        t_chunk = time.perf_counter()
        windows = stream.finish()
        seq = yield from self._answer(sid, seq, opts, windows, stream, t_chunk, final=True)
        if not windows:  # nothing new since the last update: repeat the current answer as final
            try:
                st = yield Call(lambda: self.aggregator.Get(pb.GetRequest(session_id=sid, top_k=opts.top_k),
                                                            timeout=self.s.rpc_timeout_s))  # fmt: skip
            except grpc.RpcError as e:
                raise _rpc_abort("aggregator", e) from None
            secs = stream.session_seconds
            titles = yield from self.titles(opts.library)
            yield Send(identification(sid, seq, secs, secs, True, st, titles))
        log_event(log, "session end", session=sid, seconds=round(stream.seconds, 3), updates=seq)

    def _answer(self, sid: str, seq: int, opts: StreamOptions, windows: list[Window], stream: AudioStream,
                t_chunk: float, final: bool) -> Generator[Effect, Any, int]:  # fmt: skip
        """An identification for each of ``windows`` (the last one ``final`` when asked); returns the next seq."""
        for i, w in enumerate(windows):
            last = final and i == len(windows) - 1
            msg = yield from self.identify(sid, seq, opts, w, stream, t_chunk, final=last)
            if seq == 0:
                msg.resume_token = self.resume_token(sid)
            yield Send(msg)
            seq += 1
        return seq


class EmbedderServicer(pbg.EmbedderServicer):
    """Internal: embed a batch of audio encoder inputs directly (no dynamic batching)."""

    def __init__(self, encoder: ServedEncoder, name: str = ""):
        self.encoder = encoder
        self.name = name

    def respond(self, request: pb.EmbedRequest) -> pb.EmbedResponse:
        """The embeddings; :class:`StreamAbort` for an input of the wrong shape (both fronts send it)."""
        try:
            x = from_tensor(request.audio)
            emb = self.encoder.embed_audio(x)
        except ValueError as e:  # ContractError is a ValueError: wrong shape
            ERRORS.labels(SERVICE, "INVALID_ARGUMENT").inc()
            raise StreamAbort(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from None
        return pb.EmbedResponse(embeddings=to_tensor(emb), model=self.name)

    def EmbedBatch(self, request: pb.EmbedRequest, context: grpc.ServicerContext) -> pb.EmbedResponse:
        try:
            return self.respond(request)
        except StreamAbort as e:
            context.abort(e.code, e.message)
            raise  # not reached: abort raises


def register(identify: IdentifyServicer, embedder: EmbedderServicer) -> Any:
    """``register(server)`` callback: Identify + Embedder plus health and reflection."""

    def add(server: grpc.Server) -> None:
        pbg.add_IdentifyServicer_to_server(identify, server)
        pbg.add_EmbedderServicer_to_server(embedder, server)
        add_standard_services(server, SERVICE_NAMES)

    return add
