"""The asyncio front of the client-facing services (``encoder.server: asyncio``): one coroutine per
stream on one event loop (``grpc.aio``) instead of a server thread per stream.

A stream runs the same session as the threaded front (:meth:`IdentifyServicer.session
<encoder_svc.server.IdentifyServicer.session>`, a generator of effects); this front performs
its effects on the loop:

- reads and writes of the client's stream are awaited (``context.read()`` / ``context.write()``);
  decoding, resampling and the incremental spectrogram of a chunk run inline, in the coroutine;
- a window goes to the shared :class:`~encoder_svc.batcher.DynamicBatcher`, whose threads encode,
  search and vote, and the coroutine awaits the window's future (``asyncio.wrap_future``);
- the few blocking internal calls (the library's titles, the vote of a silent window, resume,
  the final repeat, Close) run in the loop's default executor;
- the :class:`~encoder_svc.watch.StreamWatch` ends a stalled stream by cancelling its task on the
  loop; the stream then ends with ``DEADLINE_EXCEEDED`` and the watch's reason.

A request that does not parse ends the stream with ``INTERNAL`` "Exception deserializing
request!" and the session sees the end of its input, as in the threaded front (where gRPC does
this itself). ``Embedder.EmbedBatch`` runs the encoder in the loop's default executor.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import grpc

from encoder_svc import server as threaded
from encoder_svc.server import (
    SERVICE_NAMES,
    Call,
    Driven,
    Effect,
    EmbedderServicer,
    IdentifyServicer,
    Read,
    Send,
    StreamAbort,
    StreamGone,
    client_of,
)
from encoder_svc.watch import Watched
from ops.grpc_server import add_standard_services_aio, public_details
from proto.scoreid.v1 import scoreid_pb2 as pb
from proto.scoreid.v1 import scoreid_pb2_grpc as pbg

#: the status the threaded front's gRPC sends for a request that does not parse
UNPARSED = (grpc.StatusCode.INTERNAL, "Exception deserializing request!")


class _Call:
    """One Stream call on the loop: its task, and how it ended when not by its session's status."""

    def __init__(self, context: grpc.aio.ServicerContext):
        self.context = context
        self.loop = asyncio.get_running_loop()
        self.task = asyncio.current_task()
        self.expired = ""  #: the watch's reason, once the watch ended the stream
        self.unparsed = False  #: a request did not parse: the stream ends with UNPARSED
        self.gone = False  #: the client went away (the task was cancelled by gRPC)

    def expire(self, w: Watched) -> None:
        """The watch's ``cancel`` (called in the watch's thread): cancel the task on the loop."""
        self.loop.call_soon_threadsafe(self._expire, w)

    def _expire(self, w: Watched) -> None:
        if not w.closed and self.task is not None and not self.task.done():  # not ended meanwhile
            self.expired = w.reason
            self.task.cancel()

    async def outcome(self, effect: Effect) -> tuple[Any, BaseException | None]:
        """Perform ``effect``: (reply, None) or (None, the error the session gets)."""
        try:
            return await self._perform(effect), None
        except asyncio.CancelledError:
            if self.expired and self.task is not None:
                self.task.uncancel()  # the watch's cancel, handled here: the stream gets a status
            else:
                self.gone = True  # raised again once the session has ended
            return None, StreamGone()
        except Exception as e:  # noqa: BLE001 - back to the session, which handles it or ends with it
            return None, e

    async def _perform(self, effect: Effect) -> Any:
        if isinstance(effect, Read):
            try:
                msg = await self.context.read()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the request did not parse
                self.unparsed = True
                return None
            return None if msg is grpc.aio.EOF else msg
        if isinstance(effect, Send):
            if not self.unparsed:  # the stream is over for the client: nothing more is sent
                try:
                    await self.context.write(effect.msg)
                except asyncio.CancelledError:
                    raise
                except Exception:  # noqa: BLE001 - the call is over: the client cannot be reached
                    raise StreamGone() from None
            return None
        if isinstance(effect, Call):
            return await self.loop.run_in_executor(None, effect.fn)
        assert isinstance(effect, Future)
        return await asyncio.wrap_future(effect)

    def status(self, session: StreamAbort | None) -> tuple[grpc.StatusCode, str] | None:
        if self.unparsed:
            return UNPARSED
        if self.expired:
            return grpc.StatusCode.DEADLINE_EXCEEDED, self.expired
        return (session.code, public_details(session.message)) if session is not None else None


class AsyncIdentify(pbg.IdentifyServicer):
    """``Identify.Stream`` as a coroutine: the session of :class:`IdentifyServicer` ``identify``
    (its gate, watch, batcher and settings) with its effects awaited on the loop."""

    def __init__(self, identify: IdentifyServicer):
        self.identify = identify

    async def Stream(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> None:
        call = _Call(context)
        driven = Driven(self.identify.session(client_of(context, self.identify.s.clients), call.expire))
        reply: Any = None
        error: BaseException | None = None
        try:
            while (effect := driven.advance(reply, error)) is not None:
                reply, error = await call.outcome(effect)
        finally:
            driven.close()
        if call.gone:
            raise asyncio.CancelledError
        if (status := call.status(driven.status)) is not None:
            await context.abort(*status)


class AsyncEmbedder(pbg.EmbedderServicer):
    """``Embedder.EmbedBatch`` as a coroutine: :meth:`EmbedderServicer.respond` in the loop's executor."""

    def __init__(self, embedder: EmbedderServicer):
        self.embedder = embedder

    async def EmbedBatch(
        self, request: pb.EmbedRequest, context: grpc.aio.ServicerContext
    ) -> pb.EmbedResponse:
        try:
            return await asyncio.get_running_loop().run_in_executor(None, self.embedder.respond, request)
        except StreamAbort as e:
            await context.abort(e.code, e.message)
            raise  # not reached: abort raises


def register(identify: IdentifyServicer, embedder: EmbedderServicer) -> Callable[[Any], Any]:
    """``register(server)`` callback of a ``grpc.aio`` server (``build_server(..., server="asyncio")``):
    Identify + Embedder as coroutines plus the asyncio health and reflection services."""
    front, embed = AsyncIdentify(identify), AsyncEmbedder(embedder)

    async def add(server: grpc.aio.Server) -> None:
        pbg.add_IdentifyServicer_to_server(front, server)
        pbg.add_EmbedderServicer_to_server(embed, server)
        await add_standard_services_aio(server, SERVICE_NAMES)

    return add


#: ``encoder.server`` -> the register function of that front
FRONTS: dict[str, Callable[[IdentifyServicer, EmbedderServicer], Callable[[Any], Any]]] = {
    "threads": threaded.register,
    "asyncio": register,
}
