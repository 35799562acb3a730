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
  "confident"}``.

A frame the protocol does not have, or a wrong payload, raises :class:`ProtocolError` with the
close code (:mod:`web.limits`) and a reason the page shows. The engine is
:class:`scoreid.identify.stream.Identifier`, one per session: nothing is shared between sessions
but the read-only library and model.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from scoreid import contract as C
from scoreid.audio.io import check_float32_samples
from scoreid.identify.engine import EngineSettings, Update
from scoreid.identify.stream import AudioEncoder, Identifier
from scoreid.library.store import Library
from web import limits as L

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


def update_message(u: Update, ident: Identifier, samples: int, kind: str = "update") -> dict[str, Any]:
    out: dict[str, Any] = {"type": kind, **u.to_json(k=5, final=False)}
    out.update(silent=u.silent, voting=ident.n_voting, samples=samples)
    return out


class Session:
    """One WebSocket session's stream (see the module docstring); not thread-safe: one frame at a time."""

    def __init__(self, library: Library, encoder: AudioEncoder, settings: EngineSettings, limits: L.Limits):
        self.library = library
        self.encoder = encoder
        self.settings = settings
        self.limits = limits
        self.ident: Identifier | None = None
        self.samples = 0

    def hello(self) -> dict[str, Any]:
        return {
            "type": "hello",
            "sample_rate": C.SAMPLE_RATE,
            "format": FORMAT,
            "hop_s": self.settings.hop_s,
            "pieces": len(self.library.piece_ids),
            "limits": self.limits.to_json(),
        }

    @property
    def started(self) -> bool:
        return self.ident is not None

    def control(self, text: str) -> list[dict[str, Any]]:
        """A text frame: ``start`` (a new stream) or ``end`` (the answer of this one)."""
        msg = parse_control(text)
        if msg["type"] == "start":
            if msg.get("sample_rate") != C.SAMPLE_RATE or msg.get("format") != FORMAT:
                raise ProtocolError(
                    L.CLOSE_BAD_DATA,
                    f"start: audio must be {FORMAT} at {C.SAMPLE_RATE} Hz, got "
                    f"{msg.get('format')!r} at {msg.get('sample_rate')!r}",
                )
            self.ident = Identifier(self.library, self.encoder, self.settings)
            self.samples = 0
            return [{"type": "started", "sample_rate": C.SAMPLE_RATE, "hop_s": self.settings.hop_s}]
        ident = self._ident()
        out = [update_message(u, ident, self.samples) for u in ident.finish()]
        final = ident.snapshot(self.samples / C.SAMPLE_RATE)
        msg_final = update_message(final, ident, self.samples, "final")
        msg_final["confident"] = final.identity is not None
        self.ident = None
        return [*out, msg_final]

    def audio(self, data: bytes) -> list[dict[str, Any]]:
        """A binary frame: its samples through the engine; one update per completed hop."""
        x = decode_chunk(data, self.limits)
        ident = self._ident()
        self.samples += len(x)
        return [update_message(u, ident, self.samples) for u in ident.push(x)]

    def _ident(self) -> Identifier:
        if self.ident is None:
            raise ProtocolError(L.CLOSE_UNSUPPORTED, 'audio or "end" before {"type": "start"}')
        return self.ident
