"""One browser's stream: control frames and PCM frames in, the engine's answers out.

The protocol of ``/ws`` (the page's script, ``static/app.js``, speaks it):

- the server first sends ``{"type": "hello", "sample_rate", "hop_s", "pieces", "limits"}``;
- the client sends a text frame ``{"type": "start", "sample_rate": 22050, "format": "f32le"}``
  (within the options timeout; audio at the contract rate, mono float32 little-endian); the server
  answers ``{"type": "started"}``. A later ``start`` begins a new stream (the page's "restart");
- then binary frames, each a chunk of samples (at most the chunk length of the services); every
  completed hop gives ``{"type": "update", <Update.to_json>, "silent", "voting", "samples"}`` —
  the JSON line of ``scoreid identify`` (:meth:`scoreid.identify.engine.Update.to_json`) plus
  whether the hop was silent, how many hops voted so far and how many samples the server had
  received when it was made (the page times its chunks by it);
- ``{"type": "end"}`` ends the stream: the last hops, then ``{"type": "final", <the answer>,
  "confident"}`` (bridged to a stack, the stack's last hop is the final answer itself).

A frame the protocol does not have, or a wrong payload, raises :class:`ProtocolError` with the
close code (:mod:`web.limits`) and a reason the page shows.

:class:`Session` is that protocol for one connection, whichever engine answers: it checks every
frame (the same reasons either way) and hands the stream to its backend —
:class:`web.offline_session.OfflineSession` (a :class:`scoreid.identify.stream.Identifier` in this
process) or :class:`web.stack_session.StackSession` (one ``Identify.Stream`` call to a running
stack). A backend sends its answers through ``emit`` as they come, each rendered by
:func:`update_message` / :func:`final_message` from the engine's
:class:`~scoreid.identify.engine.Update`; a :class:`Backend` makes a server's sessions.
"""

from __future__ import annotations

import asyncio
import json
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, Protocol, TypeVar

import numpy as np

from scoreid import contract as C
from scoreid.audio.io import check_float32_samples
from scoreid.identify.engine import Update
from web import limits as L

#: sends messages to the browser, in order (the application's one sender of the connection)
Emit = Callable[[list[dict[str, Any]]], Awaitable[None]]
T = TypeVar("T")

FORMAT = "f32le"  #: the one audio format: float32 little-endian, mono, at the contract rate


class ProtocolError(Exception):
    """A frame the session refuses: the connection closes with ``code`` and ``reason``."""

    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = close_reason(reason)


def close_reason(text: str) -> str:
    """A close reason fits in 123 bytes of UTF-8 (RFC 6455)."""
    b = text.encode()
    return text if len(b) <= 123 else b[:120].decode(errors="ignore") + "..."


def decode_chunk(data: bytes, limits: L.Limits) -> np.ndarray:
    """One binary frame -> float32 samples; ProtocolError for an empty, ragged, long or bad chunk."""
    if len(data) > limits.max_message_bytes:
        raise ProtocolError(
            L.CLOSE_TOO_BIG, f"frame of {len(data)} bytes; the limit is {limits.max_message_bytes}"
        )
    if len(data) == 0:
        raise ProtocolError(L.CLOSE_BAD_DATA, "empty audio frame")
    if len(data) % 4:
        raise ProtocolError(
            L.CLOSE_BAD_DATA, f"audio frame of {len(data)} bytes is not whole float32 samples"
        )
    n = len(data) // 4
    if n > limits.max_chunk_samples:
        raise ProtocolError(
            L.CLOSE_TOO_BIG,
            f"audio chunk of {n} samples; the limit is "
            f"{limits.max_chunk_samples} ({limits.max_chunk_seconds:g} s); send smaller chunks",
        )
    x = np.frombuffer(data, "<f4")
    try:
        check_float32_samples(x)
    except ValueError as e:
        raise ProtocolError(L.CLOSE_BAD_DATA, str(e)) from None
    return x.astype(np.float32)


def parse_control(text: str) -> dict[str, Any]:
    """One text frame -> its JSON object (with a known ``type``)."""
    if len(text.encode()) > L.MAX_TEXT_BYTES:
        raise ProtocolError(L.CLOSE_TOO_BIG, f"control frame over {L.MAX_TEXT_BYTES} bytes")
    try:
        msg = json.loads(text)
    except ValueError:
        raise ProtocolError(L.CLOSE_UNSUPPORTED, "control frame is not JSON") from None
    if not isinstance(msg, dict) or msg.get("type") not in ("start", "end"):
        raise ProtocolError(L.CLOSE_UNSUPPORTED, 'control frame must be {"type": "start" | "end", ...}')
    return msg


def update_message(u: Update, voting: int, samples: int, kind: str = "update") -> dict[str, Any]:
    """An ``update`` message: the engine's answer after ``voting`` voting hops and ``samples`` samples."""
    out: dict[str, Any] = {"type": kind, **u.to_json(k=5, final=False)}
    out.update(silent=u.silent, voting=voting, samples=samples)
    return out


def final_message(u: Update, voting: int, samples: int) -> dict[str, Any]:
    """The ``final`` message: the answer as the stream ended (no hop of its own: never silent)."""
    out = update_message(replace(u, silent=False), voting, samples, "final")
    out["confident"] = u.identity is not None
    return out


class Session(ABC):
    """One WebSocket session's stream (see the module docstring); one frame at a time."""

    def __init__(self, pieces: int, hop_s: float, limits: L.Limits, emit: Emit):
        self.pieces = pieces
        self.hop_s = hop_s
        self.limits = limits
        self.emit = emit
        self.started = False  #: a stream is open (between ``start`` and ``end``)
        self.samples = 0  #: samples received in the open stream

    def hello(self) -> dict[str, Any]:
        return {
            "type": "hello",
            "sample_rate": C.SAMPLE_RATE,
            "format": FORMAT,
            "hop_s": self.hop_s,
            "pieces": self.pieces,
            "limits": self.limits.to_json(),
        }

    async def control(self, text: str) -> None:
        """A text frame: ``start`` (a new stream) or ``end`` (the answer of this one)."""
        msg = parse_control(text)
        if msg["type"] == "start":
            if msg.get("sample_rate") != C.SAMPLE_RATE or msg.get("format") != FORMAT:
                raise ProtocolError(
                    L.CLOSE_BAD_DATA,
                    f"start: audio must be {FORMAT} at {C.SAMPLE_RATE} Hz, got "
                    f"{msg.get('format')!r} at {msg.get('sample_rate')!r}",
                )
            await self._start()
            self.started, self.samples = True, 0
            await self.emit([{"type": "started", "sample_rate": C.SAMPLE_RATE, "hop_s": self.hop_s}])
            return
        self._require_start()
        await self._end()
        self.started = False

    async def audio(self, data: bytes) -> None:
        """A binary frame: its samples to the engine (one update per completed hop comes back)."""
        x = decode_chunk(data, self.limits)
        self._require_start()
        self.samples += len(x)
        await self._push(x)

    async def wait(self, aw: Awaitable[T], timeout: float) -> T:
        """``aw`` (the next frame) within ``timeout`` s (TimeoutError); a backend that can fail
        meanwhile raises its :class:`ProtocolError` instead."""
        return await asyncio.wait_for(aw, timeout)

    async def close(self) -> None:  # noqa: B027 - a backend with nothing to free keeps it
        """The connection is over: free what the session holds."""

    def _require_start(self) -> None:
        if not self.started:
            raise ProtocolError(L.CLOSE_UNSUPPORTED, 'audio or "end" before {"type": "start"}')

    @abstractmethod
    async def _start(self) -> None:
        """Open a new stream (dropping the one open, if any)."""

    @abstractmethod
    async def _push(self, x: np.ndarray) -> None:
        """Feed samples; emit an update per completed hop (``self.samples`` counts ``x`` already)."""

    @abstractmethod
    async def _end(self) -> None:
        """End the stream: emit the last hops' updates and the final message."""


class Backend(Protocol):
    """What answers a server's sessions, chosen when the application is made."""

    @property
    def hop_s(self) -> float:
        """Seconds of audio between updates."""
        ...

    def session(self, pieces: int, limits: L.Limits, emit: Emit) -> Session:
        """A new connection's session (``pieces``: the library's, for the hello)."""
        ...
