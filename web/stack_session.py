"""The page's sessions answered by a running stack: one ``Identify.Stream`` call each (``grpc.aio``).

``scoreid web --stack ADDRESS`` (and ``scoreid up --web``) serve these. A browser's ``start`` opens
a call to the stack (:class:`web.stack_target.StackTarget`: address, credentials, library, hop)
and sends its ``SessionOptions`` (float32 at the contract rate), then waits for the stack to admit
the session (the call's initial metadata) before any audio; each checked audio frame goes on
as an ``AudioChunk``; ``end`` half-closes the call. A reader task turns every ``Identification``
into the page's message as it arrives: :meth:`scoreid.identify.engine.Update.from_message` reads
it back into the engine's answer (positions through the one ``Position`` adapter) and
:func:`web.session.update_message` renders it, exactly as for the engine in this process; the
stack's final answer (the last hop's) is the ``final`` message. ``samples`` is the stack's own
count of the session's audio (``Identification.seconds``) when it answered.

A stack's error ends only its own browser session, with a close code and a reason the page shows
(:func:`stack_error`): unreachable or a service down (``UNAVAILABLE``) -> 4003, at its session caps
(``RESOURCE_EXHAUSTED``) -> 1013, stream timed out (``DEADLINE_EXCEEDED``) -> 4000, audio refused
(``INVALID_ARGUMENT``) -> 1007, anything else -> 1011; the details are logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import Any, TypeVar

import grpc
import numpy as np

from proto.scoreid.v1 import scoreid_pb2 as pb
from proto.scoreid.v1 import scoreid_pb2_grpc as pbg
from scoreid import contract as C
from scoreid.identify.engine import Update
from web import limits as L
from web.session import Emit, ProtocolError, Session, final_message, update_message
from web.stack_target import StackTarget

log = logging.getLogger("scoreid.web")
T = TypeVar("T")
TOP_K = 5  #: pieces per update, as the page shows them
UNREACHABLE = (
    "the scoreid stack is unreachable or one of its services is down; try again (is `scoreid up` running?)"
)
#: a stack's status -> the close code, and the reason's beginning (its details follow)
CLOSES = {
    grpc.StatusCode.RESOURCE_EXHAUSTED: (L.CLOSE_BUSY, "the stack is busy: "),
    grpc.StatusCode.DEADLINE_EXCEEDED: (L.CLOSE_IDLE, "the stack closed the stream: "),
    grpc.StatusCode.INVALID_ARGUMENT: (L.CLOSE_BAD_DATA, "the stack refused the audio: "),
    grpc.StatusCode.UNAUTHENTICATED: (L.CLOSE_ERROR, "the stack refused this server's token: "),
    grpc.StatusCode.PERMISSION_DENIED: (L.CLOSE_ERROR, "the stack refused this server: "),
}


def stack_error(e: grpc.aio.AioRpcError) -> ProtocolError:
    """The close of a browser session whose stream the stack ended with status ``e``."""
    return stack_close(e.code(), e.details() or "")


def stack_close(code: grpc.StatusCode, details: str) -> ProtocolError:
    """The close of a browser session whose stream ended with ``code`` and ``details``."""
    if code == grpc.StatusCode.UNAVAILABLE:
        return ProtocolError(L.CLOSE_UNREACHABLE, UNREACHABLE)
    close, why = CLOSES.get(code, (L.CLOSE_ERROR, f"the stack failed ({code.name}): "))
    return ProtocolError(close, why + details)


def page_message(msg: pb.Identification) -> dict[str, object]:
    """One ``Identification`` as the page's ``update`` (or, the last, ``final``) message."""
    u = Update.from_message(msg)
    samples = round(msg.seconds * C.SAMPLE_RATE)
    return final_message(u, msg.voting, samples) if msg.final else update_message(u, msg.voting, samples)


class StackBackend:
    """Sessions answered by the stack of ``target``."""

    def __init__(self, target: StackTarget):
        self.target = target

    @property
    def hop_s(self) -> float:
        return self.target.hop_s

    def session(self, pieces: int, limits: L.Limits, emit: Emit) -> StackSession:
        return StackSession(self.target, pieces, limits, emit)


class StackSession(Session):
    """One browser's stream as one ``Identify.Stream`` call (see the module docstring)."""

    def __init__(self, target: StackTarget, pieces: int, limits: L.Limits, emit: Emit):
        super().__init__(pieces, target.hop_s, limits, emit)
        self.target = target
        self.channel: grpc.aio.Channel | None = None  # this session's own, made on its loop
        self.call: grpc.aio.StreamStreamCall | None = None
        self.reader: asyncio.Task[None] | None = None
        self._failure: asyncio.Future[ProtocolError] | None = None

    # ------------------------------------------------------------------ the stream
    async def _start(self) -> None:
        await self._drop_call()  # a restart: the stream open so far is cancelled, its answers dropped
        if self.channel is None:
            self.channel = self.target.channel()
        call = pbg.IdentifyStub(self.channel).Stream(metadata=self.target.metadata)
        self.call = call
        self.reader = asyncio.create_task(self._read(call))
        options = pb.SessionOptions(
            sample_rate=C.SAMPLE_RATE,
            encoding=pb.PCM_FLOAT32,
            library=self.target.library,
            hop_seconds=self.target.hop_s,
            top_k=TOP_K,
            client_name="scoreid-web",
        )
        await self._write(pb.StreamRequest(options=options))
        await self._admitted(call)

    async def _admitted(self, call: grpc.aio.StreamStreamCall) -> None:
        """Wait for the stack to admit the session (its initial metadata) before any audio: a
        write into a call the stack is refusing can be told INTERNAL instead of why
        (grpc/grpc#36066). A refusal ends the call without it: the reader then says why."""
        try:
            await asyncio.wait_for(call.initial_metadata(), timeout=self.limits.idle_timeout_s)
        except TimeoutError:
            raise self._fail(
                ProtocolError(L.CLOSE_ERROR, "the stack did not admit the session; start again")
            ) from None
        except grpc.aio.AioRpcError as e:
            raise self._fail(stack_error(e)) from None
        if call.done():
            code = await call.code()
            if code != grpc.StatusCode.OK:
                raise self._fail(stack_close(code, await call.details() or ""))

    async def _push(self, x: np.ndarray) -> None:
        await self._write(pb.StreamRequest(audio=pb.AudioChunk(data=x.astype("<f4").tobytes())))

    async def _end(self) -> None:
        call, reader = self.call, self.reader
        assert call is not None and reader is not None, "the base class checks for a started stream"
        self._check()
        try:
            await call.done_writing()
        except grpc.aio.AioRpcError as e:
            raise self._fail(await self._write_error(e)) from None
        done, _ = await asyncio.wait({reader}, timeout=self.limits.idle_timeout_s)  # the final answer
        if not done:
            raise self._fail(ProtocolError(L.CLOSE_ERROR, "the stack sent no final answer; start again"))
        self._check()
        self.call = self.reader = None

    async def _write(self, req: pb.StreamRequest) -> None:
        self._check()
        assert self.call is not None
        try:
            await self.call.write(req)
        except grpc.aio.AioRpcError as e:
            raise self._fail(await self._write_error(e)) from None
        except asyncio.InvalidStateError:  # the call is over: its reader says how
            if self.reader is not None:
                await asyncio.wait({self.reader}, timeout=5.0)
            self._check()
            raise self._fail(
                ProtocolError(L.CLOSE_ERROR, "the stack ended the stream; start again")
            ) from None

    async def _write_error(self, e: grpc.aio.AioRpcError) -> ProtocolError:
        """Why a write failed. A write that races the stack's end of the call (its token refused,
        its cap reached) can fail with INTERNAL instead of the call's status (grpc/grpc#36066):
        then the call's own status, once it has one, says why."""
        if e.code() == grpc.StatusCode.INTERNAL and self.call is not None:
            try:
                code = await asyncio.wait_for(self.call.code(), timeout=5.0)
                if code != grpc.StatusCode.OK:
                    return stack_close(code, await self.call.details() or "")
            except (TimeoutError, grpc.aio.AioRpcError):
                pass
        return stack_error(e)

    async def _read(self, call: grpc.aio.StreamStreamCall) -> None:
        """The call's answers to the page, as they come; its error as the session's failure."""
        try:
            async for msg in call:
                await self.emit([page_message(msg)])
        except grpc.aio.AioRpcError as e:
            log.info("stack stream ended: %s: %s", e.code().name, e.details())
            self._fail(stack_error(e))
        except Exception:  # noqa: BLE001 - the page cannot be written to: the connection is over
            log.debug("stack answer not delivered", exc_info=True)
            call.cancel()

    # ------------------------------------------------------------------ failure
    def _failed(self) -> asyncio.Future[ProtocolError]:
        if self._failure is None:
            self._failure = asyncio.get_running_loop().create_future()
        return self._failure

    def _fail(self, err: ProtocolError) -> ProtocolError:
        """Record the session's failure (the first one stands); returns it."""
        f = self._failed()
        if not f.done():
            f.set_result(err)
        return f.result()

    def _check(self) -> None:
        f = self._failed()
        if f.done():
            raise f.result()

    async def wait(self, aw: Awaitable[T], timeout: float) -> T:
        """The next frame within ``timeout`` s, unless the stack ends the stream first."""
        task = asyncio.ensure_future(aw)
        failed = self._failed()
        pending: set[asyncio.Future[Any]] = {task, failed}
        done, _ = await asyncio.wait(pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if failed.done():
            raise failed.result()
        raise TimeoutError

    # ------------------------------------------------------------------ the end
    async def _drop_call(self) -> None:
        call, reader = self.call, self.reader
        self.call = self.reader = None
        if call is not None:
            call.cancel()
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def close(self) -> None:
        await self._drop_call()
        if self.channel is not None:
            await self.channel.close()
            self.channel = None
