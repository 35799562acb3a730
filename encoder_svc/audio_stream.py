"""One client stream's audio path: decode PCM bytes, resample, incremental spectrogram, hop windows.

:class:`StreamOptions` validates the session options; :class:`AudioStream` turns chunks into
the audio encoder's windows with the core's own steps — the resampler, the incremental front end
(:class:`~scoreid.audio.spectrogram.OnlineSpectrogram`), chained as one
:class:`~scoreid.audio.processor.SequentialProcessor`, and the hop windows with the silence rule
(:class:`scoreid.identify.windows.HopWindows`, what ``scoreid identify`` runs), each window stamped
with its audio time (plus the offset of a resumed session). Invalid input raises
:class:`StreamError` with a message meant for the client.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from scoreid import contract as C
from scoreid.audio.io import MAX_SAMPLE as MAX_SAMPLE  # the bound on float32 samples, re-exported
from scoreid.audio.io import Resampler, check_float32_samples
from scoreid.audio.processor import SequentialProcessor
from scoreid.audio.spectrogram import OnlineSpectrogram
from scoreid.identify.windows import HopWindows, Window, hop_frames_of

MIN_RATE, MAX_RATE = 8000, 192000
MIN_HOP_S, MAX_HOP_S = 0.05, 10.0
MAX_TOP_K = 50
ENCODINGS = {1: ("float32", "<f4", 4), 2: ("int16", "<i2", 2)}  # proto Encoding -> (name, dtype, bytes)


class StreamError(ValueError):
    """Bad input on a client stream (becomes INVALID_ARGUMENT with this message)."""


@dataclass(frozen=True)
class StreamOptions:
    sample_rate: int
    encoding: int
    hop_s: float
    top_k: int
    library: str = ""

    @classmethod
    def validate(
        cls,
        sample_rate: int,
        encoding: int,
        hop_s: float,
        top_k: int,
        library: str,
        default_hop_s: float,
        default_top_k: int,
    ) -> StreamOptions:
        if encoding not in ENCODINGS:
            raise StreamError(f"unsupported encoding {encoding}: use PCM_FLOAT32 (1) or PCM_INT16 (2)")
        if not (MIN_RATE <= sample_rate <= MAX_RATE):
            raise StreamError(f"unsupported sample rate {sample_rate} Hz: must be {MIN_RATE}..{MAX_RATE}")
        hop = hop_s or default_hop_s
        if not (math.isfinite(hop) and MIN_HOP_S <= hop <= MAX_HOP_S):
            raise StreamError(f"hop_seconds must be {MIN_HOP_S}..{MAX_HOP_S}, got {hop_s}")
        k = top_k or default_top_k
        if k > MAX_TOP_K:
            raise StreamError(f"top_k must be <= {MAX_TOP_K}, got {top_k}")
        return cls(int(sample_rate), int(encoding), float(hop), int(k), library)

    @property
    def hop_frames(self) -> int:
        return hop_frames_of(self.hop_s)


def decode(data: bytes, encoding: int, sample_rate: int, max_chunk_s: float) -> np.ndarray:
    """PCM bytes -> float32 samples in [-1, 1]; StreamError for empty, ragged, huge or non-finite chunks."""
    name, dtype, width = ENCODINGS[encoding]
    if len(data) == 0:
        raise StreamError("empty audio chunk (0 bytes)")
    if len(data) % width:
        raise StreamError(f"audio chunk of {len(data)} bytes is not a whole number of {name} samples")
    n = len(data) // width
    if n > max_chunk_s * sample_rate:
        raise StreamError(f"audio chunk of {n} samples is longer than {max_chunk_s:g} s; send smaller chunks")
    x = np.frombuffer(data, dtype=dtype)
    if encoding == 2:
        return x.astype(np.float32) / 32768.0
    try:
        check_float32_samples(x)
    except ValueError as e:
        raise StreamError(str(e)) from None
    return x.astype(np.float32)


class AudioStream:
    """Chunks in, hop windows out, for one session."""

    def __init__(
        self,
        opts: StreamOptions,
        frames: int = C.AUDIO_WINDOW_FRAMES,
        t_offset: float = 0.0,
        max_chunk_s: float = 10.0,
    ):
        self.opts = opts
        self.t_offset = t_offset
        self.max_chunk_s = max_chunk_s
        # the input chain: the client's rate -> the contract rate -> spectrogram frames
        self.front = SequentialProcessor([Resampler(opts.sample_rate).stream(), OnlineSpectrogram()])
        self.windows = HopWindows(opts.hop_frames, frames, t_offset)
        self.samples_in = 0
        self.stamps: dict[str, float] = {}
        #: the audio encoder's state of this stream (:class:`scoreid.incremental.AudioState`: at most
        #: 36 stem columns, ~318 KB), set by the server when its encoder is incremental; dropped with the stream
        self.encoder_state: Any = None

    @property
    def seconds(self) -> float:
        """Seconds of client audio consumed on this connection."""
        return self.samples_in / self.opts.sample_rate

    @property
    def session_seconds(self) -> float:
        """The session's audio time: a resumed session continues from its last vote's time."""
        return self.t_offset + self.seconds

    def push(self, data: bytes) -> list[Window]:
        """Decode and process one chunk; returns the windows that completed (possibly none)."""
        x = decode(data, self.opts.encoding, self.opts.sample_rate, self.max_chunk_s)
        self.samples_in += len(x)
        times = [0.0, 0.0]
        frames = self.front.process(x, times)
        self._stamp(times)
        return self.windows.push(frames)

    def finish(self) -> list[Window]:
        """End of stream: flush resampler and spectrogram; a last window if frames arrived since."""
        times = [0.0, 0.0]
        frames = self.front.flush(times)
        self._stamp(times)
        return self.windows.finish(frames)

    def _stamp(self, times: list[float]) -> None:
        self.stamps = {"resample": times[0] * 1000, "spectrogram": times[1] * 1000}
