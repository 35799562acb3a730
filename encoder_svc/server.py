"""The client-facing Identify service (and the internal Embedder): stream in, identifications out.

Per stream: validate the options, admit the session (per-client and global caps), then for
every chunk run :class:`~encoder_svc.audio_stream.AudioStream` (the core's hop windows and silence
rule); each sounding window goes through the shared :class:`~encoder_svc.batcher.DynamicBatcher`
(:class:`~encoder_svc.pipeline.Pipeline`: encode a batch with the audio encoder, one Index.Search
per library for the batch, then one Aggregator.VoteBatch, where each session's engine — tally,
score follower, confidence — takes its hop), and an ``Identification`` goes back: the same answer
``scoreid identify`` gives offline. On half-close the last window is processed, the final answer
is sent with ``final = true`` and the session's tallies are deleted.

``Identify.Stream`` is a coroutine on the ``grpc.aio`` server's event loop (one per stream, as in
grpc's asyncio route_guide): it reads the client's messages with ``async for``, decodes,
resamples and computes the incremental spectrogram inline, awaits its window's batch and its few
own internal calls (the library's titles, the vote of a silent window, resume, the final repeat,
Close; ``grpc.aio`` stubs), and writes each identification back.

Slots are not free: the options must arrive within ``options_timeout_s``, then a message at least
every ``idle_timeout_s`` (:class:`~encoder_svc.watch.StreamWatch` ends a stream that stalls);
streams still without options are capped apart from sessions, and the per-client cap keys on the
caller's named token (``encoder.clients_file``) or else its address (:mod:`encoder_svc.gate`).

Errors are gRPC statuses for that stream only: bad input -> INVALID_ARGUMENT, session caps ->
RESOURCE_EXHAUSTED, session too long or stalled -> DEADLINE_EXCEEDED, index or aggregator down ->
UNAVAILABLE (the tallies stay in Redis for the TTL; the client can resume with
``SessionOptions.resume_session``). A request that does not parse ends the stream with
``INTERNAL`` "Exception deserializing request!" (the session sees the end of its input).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np

from encoder_svc.audio_stream import AudioStream, StreamError, StreamOptions, Window
from encoder_svc.batcher import BatcherClosed, DynamicBatcher
from encoder_svc.gate import SessionGate, StreamAbort, client_of, rpc_abort
from encoder_svc.pipeline import (
    SERVICE,
    BadWindow,
    Pipeline,
    ServedEncoder,
    WindowJob,
    identification,
    vote_request,
)
from encoder_svc.watch import StreamWatch, Watched
from ops.grpc_server import add_standard_services, internal_channel, public_details
from ops.logs import log_event
from ops.metrics import ACTIVE_SESSIONS, ERRORS, SESSIONS, STAGE_SECONDS, UPDATES
from proto.scoreid.v1 import scoreid_pb2 as pb
from proto.scoreid.v1 import scoreid_pb2_grpc as pbg
from proto.tensor import from_tensor, to_tensor
from scoreid.identify.engine import DEFAULT_HOP_S, TOP_K

SERVICE_NAMES = [pb.DESCRIPTOR.services_by_name[n].full_name for n in ("Identify", "Embedder")]
STATUS_BY_CODE = {c.value[0]: c for c in grpc.StatusCode}
#: the status of a stream whose request did not parse (what gRPC itself sends for a unary call)
UNPARSED = StreamAbort(grpc.StatusCode.INTERNAL, "Exception deserializing request!")
log = logging.getLogger("scoreid.encoder")
Stubs = tuple[pbg.IndexStub, pbg.AggregatorStub]  #: a loop's grpc.aio stubs of the index and the aggregator


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
    search: str = "aggregator"  #: where windows are searched: aggregator (in VoteBatch) | index (as load_config resolves it)
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


class StreamGone(Exception):
    """The client cannot be written to any more: the call is over on its side."""


class ClientStream:
    """The client's side of one call: its messages (``async for``; a message that does not parse
    ends them and sets ``unparsed``) and :meth:`write` for the replies."""

    def __init__(self, requests: AsyncIterator[pb.StreamRequest], context: grpc.aio.ServicerContext):
        self.requests = requests
        self._messages: AsyncIterator[pb.StreamRequest] | None = None  # made on the first read
        self.context = context
        self.unparsed = False

    def __aiter__(self) -> ClientStream:
        return self

    async def __anext__(self) -> pb.StreamRequest:
        if self.unparsed:
            raise StopAsyncIteration
        if self._messages is None:
            self._messages = aiter(self.requests)
        try:
            return await anext(self._messages)
        except (StopAsyncIteration, asyncio.CancelledError):
            raise
        except Exception:  # noqa: BLE001 - the request did not parse
            self.unparsed = True
            raise StopAsyncIteration from None

    async def read(self) -> pb.StreamRequest | None:
        """The next message, or ``None`` once the client half-closed."""
        return await anext(self, None)

    async def admitted(self) -> None:
        """Tell the client its session is admitted (options valid, library known, a slot free):
        the call's initial metadata, sent before any answer. A client that waits for it before
        its audio never writes into a call the server is refusing (see ``proto/``)."""
        try:
            await self.context.send_initial_metadata(())
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the call is over: the client cannot be reached
            raise StreamGone() from None

    async def write(self, msg: pb.Identification) -> None:
        if self.unparsed:  # the stream is over for the client: nothing more is sent
            return
        try:
            await self.context.write(msg)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the call is over: the client cannot be reached
            raise StreamGone() from None


class IdentifyServicer(pbg.IdentifyServicer):
    """The Identify service: :meth:`Stream`, a coroutine per stream (see the module text)."""

    def __init__(
        self,
        encoder: ServedEncoder,
        index_address: str,
        aggregator_address: str,
        settings: EncoderSettings | None = None,
        internal_token: str = "",
    ):
        """``internal_token``: the credential the index and the aggregator require (``internal.token``)."""
        self.encoder = encoder
        self.s = settings or EncoderSettings()
        self.frames = encoder.contract.audio_window_frames
        self._addresses = (index_address, aggregator_address)
        self._metadata = (("authorization", f"Bearer {internal_token}"),) if internal_token else None
        self._channels = [internal_channel(a, internal_token) for a in self._addresses]  # the batcher's
        self._aio: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Stubs] = weakref.WeakKeyDictionary()
        pipeline = Pipeline(
            encoder,
            pbg.IndexStub(self._channels[0]),
            pbg.AggregatorStub(self._channels[1]),
            self.s.rpc_timeout_s,
            search_in_aggregator=self.s.search == "aggregator",
        )
        self.batcher = DynamicBatcher(
            pipeline, self.s.max_batch, self.s.max_wait_ms / 1000.0, SERVICE, self.s.batch_workers
        )
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
        self.batcher.stop()
        for ch in self._channels:
            ch.close()
        self._aio.clear()  # their grpc.aio channels close when collected (their loops may be gone)

    # ------------------------------------------------------------------ helpers
    async def _call(self, what: str, method: Callable[..., Any], request: Any) -> Any:
        """An internal unary call on this loop's ``grpc.aio`` stubs; its failure as a :class:`StreamAbort`."""
        try:
            return await method(request, timeout=self.s.rpc_timeout_s, metadata=self._metadata)
        except grpc.RpcError as e:
            raise rpc_abort(what, e) from None

    @property
    def _stubs(self) -> Stubs:
        """The index and aggregator stubs of the running loop (a ``grpc.aio`` channel belongs to
        the loop it was made on: made on first use there)."""
        loop = asyncio.get_running_loop()
        if loop not in self._aio:
            index, aggregator = (grpc.aio.insecure_channel(a) for a in self._addresses)
            self._aio[loop] = pbg.IndexStub(index), pbg.AggregatorStub(aggregator)
        return self._aio[loop]

    async def titles(self, library: str) -> dict[str, str]:
        """The library's titles; refuses a library embedded with another model than this encoder's."""
        if library not in self._titles:
            info = await self._call("index", self._stubs[0].Info, pb.InfoRequest(library=library))
            li = info.libraries[0] if info.libraries else pb.LibraryInfo()
            if li.model_sha256 and self.model_sha256 and li.model_sha256 != self.model_sha256:
                raise StreamAbort(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"library {li.name!r} was embedded with another model than the encoder serves; "
                    "rebuild the library with the encoder's model",
                )
            self._titles[library] = dict(li.titles)
        return self._titles[library]

    def options(self, first: pb.StreamRequest | None) -> StreamOptions:
        if first is None:
            raise StreamAbort(
                grpc.StatusCode.INVALID_ARGUMENT, "empty stream: the first message must be SessionOptions"
            )
        if first.WhichOneof("msg") != "options":
            raise StreamAbort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "the first message must be SessionOptions (got audio before options)",
            )
        o = first.options
        try:
            return StreamOptions.validate(
                o.sample_rate, o.encoding, o.hop_seconds, o.top_k, o.library, self.s.hop_s, self.s.top_k
            )
        except StreamError as e:
            raise StreamAbort(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from None

    async def vote(self, job: WindowJob, silent: bool, stamps: dict[str, float]) -> pb.VoteResponse:
        """The engine's answer for one window: a silent one casts no vote (as the offline identifier)
        and is a direct Vote; a sounding one waits for its batch."""
        if silent:
            t0 = time.perf_counter()
            vote = await self._call("aggregator", self._stubs[1].Vote, vote_request(job, None, None))
            stamps["vote"] = (time.perf_counter() - t0) * 1000
            return vote  # type: ignore[no-any-return]
        try:
            (hl, result, bstamps), wait = await asyncio.wrap_future(self.batcher.submit(job))
        except BatcherClosed as e:
            raise StreamAbort(grpc.StatusCode.UNAVAILABLE, str(e)) from None
        if isinstance(hl, BadWindow):
            raise StreamAbort(grpc.StatusCode.INVALID_ARGUMENT, str(hl))
        if isinstance(hl, grpc.RpcError):
            raise rpc_abort("index", hl)
        if isinstance(result, grpc.RpcError):
            raise rpc_abort("aggregator", result)
        if result.code != 0:
            raise StreamAbort(STATUS_BY_CODE.get(result.code, grpc.StatusCode.UNKNOWN), result.error)
        stamps.update(bstamps)
        stamps["queue_wait"] = wait * 1000
        return result.response  # type: ignore[no-any-return]

    async def identify(
        self,
        sid: str,
        seq: int,
        opts: StreamOptions,
        w: Window,
        stream: AudioStream,
        t_chunk: float,
        final: bool,
    ) -> pb.Identification:
        stamps = dict(stream.stamps)
        if not np.isfinite(w.excerpt).all():  # checked before it can join (and fail) a shared batch
            raise StreamAbort(
                grpc.StatusCode.INVALID_ARGUMENT, "the audio gave non-finite features; the session is ended"
            )
        job = WindowJob(
            w.excerpt, opts.library, self.s.k, sid, w.t, opts.top_k, opts.hop_s, w.end, stream.encoder_state
        )
        vote = await self.vote(job, w.silent, stamps)
        STAGE_SECONDS.labels(SERVICE, "vote").observe(stamps["vote"] / 1000)
        stamps["total"] = (time.perf_counter() - t_chunk) * 1000
        STAGE_SECONDS.labels(SERVICE, "total").observe(stamps["total"] / 1000)
        titles = await self.titles(opts.library)
        if any(t.piece not in titles for t in vote.top):  # a piece ingested since: refresh once
            self._titles.pop(opts.library, None)
            titles = await self.titles(opts.library)
        msg = identification(sid, seq, stream.session_seconds, w.t, final, vote, titles, w.silent)
        for name, ms in stamps.items():
            msg.latency_ms[name] = ms
        UPDATES.labels(SERVICE).inc()
        log_event(
            log,
            "update",
            level=logging.DEBUG,
            session=sid,
            seq=seq,
            stage="total",
            latency_ms=round(stamps["total"], 3),
            top=msg.top[0].piece if msg.top else "",
        )
        return msg

    # ------------------------------------------------------------------ the RPC
    async def Stream(
        self, request_iterator: AsyncIterator[pb.StreamRequest], context: grpc.aio.ServicerContext
    ) -> None:
        """One stream from its first message to its end; ends with the session's status, if any."""
        stream = ClientStream(request_iterator, context)
        status = await self.session(client_of(context, self.s.clients), stream)
        if stream.unparsed:
            status = UNPARSED
        if status is not None:
            await context.abort(status.code, public_details(status.message))

    async def session(self, client: str, stream: ClientStream) -> StreamAbort | None:
        """The session of ``stream``: the status to end it with (``None``: it ended well, or the
        client went away)."""
        sid = ""
        admitted = pending = clean_end = False
        status: StreamAbort | None = None
        watch: Watched | None = None
        try:
            async with self.watch.open(
                self.s.options_timeout_s,
                f"no SessionOptions within {self.s.options_timeout_s:g} s of the stream's start",
            ) as watch:
                try:
                    self.gate.enter()
                    pending = True
                    first = await stream.read()
                    self.gate.entered()
                    pending = False
                    opts = self.options(first)
                    self.gate.admit(client)
                    admitted = True
                    started = time.monotonic()
                    watch.extend(self.s.idle_timeout_s, self._idle_reason, started + self.s.max_session_s)
                    SESSIONS.labels(SERVICE).inc()
                    ACTIVE_SESSIONS.labels(SERVICE).set(self.gate.active)
                    await self.titles(opts.library)  # an unknown library fails here, before any audio
                    assert first is not None
                    sid, t_offset = (
                        await self.resume(first.options.resume_session, first.options.resume_token)
                        if first.options.resume_session
                        else (uuid.uuid4().hex, 0.0)
                    )
                    await stream.admitted()
                    await self._session(stream, opts, sid, t_offset, started, watch)
                    clean_end = True
                finally:
                    if pending:
                        self.gate.entered()
                    if admitted:
                        self.gate.release(client)
                        ACTIVE_SESSIONS.labels(SERVICE).set(self.gate.active)
        except StreamAbort as e:
            ERRORS.labels(SERVICE, e.code.name).inc()
            log_event(
                log,
                "stream error",
                level=logging.WARNING,
                session=sid,
                client=client,
                code=e.code.name,
                error=e.message,
            )
            status = e
        except TimeoutError:
            if watch is None or not watch.expired:
                raise
            ERRORS.labels(SERVICE, "DEADLINE_EXCEEDED").inc()
            log_event(
                log,
                "stream timed out",
                level=logging.WARNING,
                session=sid,
                client=client,
                error=watch.expired,
            )
            return StreamAbort(grpc.StatusCode.DEADLINE_EXCEEDED, watch.expired)
        except (StreamGone, asyncio.CancelledError) as e:  # the client went away (gRPC cancelled the call)
            ERRORS.labels(SERVICE, "CANCELLED").inc()
            log_event(log, "client vanished", level=logging.WARNING, session=sid, client=client)
            if isinstance(e, asyncio.CancelledError):
                raise
        if clean_end and sid:
            try:
                await self._call("aggregator", self._stubs[1].Close, pb.CloseRequest(session_id=sid))
            except StreamAbort:
                pass  # the TTL removes it
        return status

    async def resume(self, sid: str, token: str) -> tuple[str, float]:
        """Continue a session kept in Redis: its id and the audio time of its last vote. Only with
        the session's resume token (the id alone is not a secret)."""
        if not hmac.compare_digest(token.encode(), self.resume_token(sid).encode()):
            raise StreamAbort(
                grpc.StatusCode.PERMISSION_DENIED,
                "resuming a session needs its resume_token (sent in its first Identification)",
            )
        st = await self._call("aggregator", self._stubs[1].Get, pb.GetRequest(session_id=sid, top_k=1))
        if not st.top and st.t_seconds == 0:
            raise StreamAbort(
                grpc.StatusCode.NOT_FOUND, f"session {sid} is unknown or expired; start a new one"
            )
        return sid, st.t_seconds

    @property
    def _idle_reason(self) -> str:
        return f"no audio for {self.s.idle_timeout_s:g} s: the stream is closed"

    async def _session(
        self,
        client: ClientStream,
        opts: StreamOptions,
        sid: str,
        t_offset: float,
        started: float,
        watch: Watched,
    ) -> None:
        stream = AudioStream(opts, self.frames, t_offset, self.s.max_chunk_seconds)
        new_stream = getattr(self.encoder, "new_stream", None)
        stream.encoder_state = new_stream() if new_stream is not None else None
        seq = 0
        log_event(
            log, "session start", session=sid, rate=opts.sample_rate, hop_s=opts.hop_s, library=opts.library
        )
        async for req in client:
            watch.extend(self.s.idle_timeout_s, self._idle_reason, started + self.s.max_session_s)
            t_chunk = time.perf_counter()
            if time.monotonic() - started > self.s.max_session_s:
                raise StreamAbort(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"session exceeded the maximum duration of {self.s.max_session_s:g} s",
                )
            kind = req.WhichOneof("msg")
            if kind != "audio":
                raise StreamAbort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "SessionOptions may be sent only once, as the first message"
                    if kind
                    else "empty StreamRequest (neither options nor audio)",
                )
            try:
                windows = stream.push(req.audio.data)
            except StreamError as e:
                raise StreamAbort(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from None
            STAGE_SECONDS.labels(SERVICE, "resample").observe(stream.stamps["resample"] / 1000)
            STAGE_SECONDS.labels(SERVICE, "spectrogram").observe(stream.stamps["spectrogram"] / 1000)
            seq = await self._answer(client, sid, seq, opts, windows, stream, t_chunk, final=False)
        t_chunk = time.perf_counter()
        windows = stream.finish()
        seq = await self._answer(client, sid, seq, opts, windows, stream, t_chunk, final=True)
        if not windows:  # nothing new since the last update: repeat the current answer as final
            st = await self._call(
                "aggregator", self._stubs[1].Get, pb.GetRequest(session_id=sid, top_k=opts.top_k)
            )
            secs = stream.session_seconds
            titles = await self.titles(opts.library)
            await client.write(identification(sid, seq, secs, secs, True, st, titles))
        log_event(log, "session end", session=sid, seconds=round(stream.seconds, 3), updates=seq)

    async def _answer(
        self,
        client: ClientStream,
        sid: str,
        seq: int,
        opts: StreamOptions,
        windows: list[Window],
        stream: AudioStream,
        t_chunk: float,
        final: bool,
    ) -> int:
        """An identification for each of ``windows`` (the last one ``final`` when asked); returns the next seq."""
        for i, w in enumerate(windows):
            last = final and i == len(windows) - 1
            msg = await self.identify(sid, seq, opts, w, stream, t_chunk, final=last)
            if seq == 0:
                msg.resume_token = self.resume_token(sid)
            await client.write(msg)
            seq += 1
        return seq


class EmbedderServicer(pbg.EmbedderServicer):
    """Internal: embed a batch of audio encoder inputs directly (no dynamic batching), in the
    loop's default executor."""

    def __init__(self, encoder: ServedEncoder, name: str = ""):
        self.encoder = encoder
        self.name = name

    def respond(self, request: pb.EmbedRequest) -> pb.EmbedResponse:
        """The embeddings; :class:`StreamAbort` for an input of the wrong shape."""
        try:
            x = from_tensor(request.audio)
            emb = self.encoder.embed_audio(x)
        except ValueError as e:  # ContractError is a ValueError: wrong shape
            ERRORS.labels(SERVICE, "INVALID_ARGUMENT").inc()
            raise StreamAbort(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from None
        return pb.EmbedResponse(embeddings=to_tensor(emb), model=self.name)

    async def EmbedBatch(
        self, request: pb.EmbedRequest, context: grpc.aio.ServicerContext
    ) -> pb.EmbedResponse:
        try:
            return await asyncio.get_running_loop().run_in_executor(None, self.respond, request)
        except StreamAbort as e:
            await context.abort(e.code, e.message)
            raise  # not reached: abort raises


def register(identify: IdentifyServicer, embedder: EmbedderServicer) -> Callable[[Any], Any]:
    """``register(server)`` callback: Identify + Embedder plus health and reflection."""

    async def add(server: grpc.aio.Server) -> None:
        pbg.add_IdentifyServicer_to_server(identify, server)
        pbg.add_EmbedderServicer_to_server(embedder, server)
        await add_standard_services(server, SERVICE_NAMES)

    return add
