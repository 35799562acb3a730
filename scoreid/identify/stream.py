"""Streaming identification in one process: audio in, running identity and score position out.

:class:`Identifier` is the engine of ``scoreid identify`` and the demo, built from the steps the
services run too: the incremental front end (:class:`scoreid.audio.spectrogram.OnlineSpectrogram`),
the hop windows with the silence rule (:class:`scoreid.identify.windows.HopWindows`), the audio
encoder, exact search for the top-25 sheet windows (:class:`scoreid.search.exact.ExactIndex`, with
the library's hub correction, :mod:`scoreid.search.hubness`), and
the session engine (:class:`scoreid.identify.engine.SessionEngine`: tally, score follower,
confidence). The services split the same steps over processes — windows and the encoder in the
encoder service, search in the index, the engine in the aggregator with its state in Redis — so
both paths give the same answers (``tests/ops/test_parity.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Protocol

import numpy as np

from scoreid import contract as C
from scoreid.audio.spectrogram import OnlineSpectrogram
from scoreid.identify import confidence as K
from scoreid.identify.engine import DEFAULT_HOP_S, TOP_K, EngineSettings, SessionEngine, Update
from scoreid.identify.windows import SILENCE_LEVEL, HopWindows, Window
from scoreid.library.store import Library
from scoreid.search.exact import ExactIndex
from scoreid.tensors import audio_to_network

__all__ = ["DEFAULT_HOP_S", "SILENCE_LEVEL", "TOP_K", "Identifier", "Update", "time_to_identify"]


def time_to_identify(ts: Sequence[float], right: Sequence[bool]) -> float:
    """The first time ``ts[k]`` from which ``right`` holds at every later hop (inf: it does not hold
    at the end) — the time to identify of the benchmarks and the demo."""
    if not right or not right[-1]:
        return float("inf")
    k = len(right) - 1
    while k > 0 and right[k - 1]:
        k -= 1
    return float(ts[k])


class AudioEncoder(Protocol):
    def embed_audio(self, x: Any) -> np.ndarray: ...


class Identifier:
    """Running identification of one audio stream against a library."""

    def __init__(
        self,
        library: Library,
        encoder: AudioEncoder,
        settings: EngineSettings | None = None,
        k: int = TOP_K,
        **changes: Any,
    ):
        """The engine runs with ``settings`` (:class:`scoreid.identify.engine.EngineSettings`; its
        defaults when None), ``changes`` replacing fields of them by name (``hop_s=0.25``;
        ``vote_temperature=math.inf, chance_exponent=0`` is the published vote scheme); ``k``
        neighbours per audio window vote."""
        self.settings = replace(settings or EngineSettings(), **changes)
        self.engine = SessionEngine(library, self.settings)
        self.library = library
        self.encoder = encoder
        self.index = ExactIndex(library.search_vectors)
        self.k = k
        self.front = OnlineSpectrogram()
        self.windows = HopWindows(self.settings.hop_frames, library.contract.audio_window_frames)
        # the incremental audio encoder's state of this stream (scoreid.incremental), as the encoder service keeps one per session
        new_stream = getattr(encoder, "new_stream", None)
        self.audio_state = new_stream() if new_stream is not None else None
        self.n_windows = 0

    @property
    def n_voting(self) -> int:
        return self.engine.n_voting

    @property
    def follower(self) -> Any:
        return self.engine.follower

    def push(self, samples: np.ndarray) -> list[Update]:
        """Feed audio samples; returns one :class:`Update` per completed hop."""
        return self._run(self.windows.push(self.front.push(samples)))

    def push_frames(self, frames: np.ndarray) -> list[Update]:
        """Feed contract spectrogram frames (T, 92) instead of audio, e.g. a stored corpus
        spectrogram: the same as pushing the audio they were computed from (the online front end
        reproduces the offline spectrogram exactly). Do not mix with :meth:`push` in one stream."""
        frames = np.asarray(frames, np.float32)
        if frames.ndim != 2 or frames.shape[1] != C.N_BINS:
            raise ValueError(f"frames must be (T, {C.N_BINS}), got {frames.shape}")
        return self._run(self.windows.push(frames))

    def finish(self) -> list[Update]:
        """End of stream: flush the front end (and process a last partial hop)."""
        return self._run(self.windows.finish(self.front.flush()))

    def _run(self, windows: list[Window]) -> list[Update]:
        return [self._step(w) for w in windows]

    def _step(self, w: Window) -> Update:
        self.n_windows += 1
        if w.silent:
            return self.engine.silent(w.t)
        x = audio_to_network(w.excerpt)
        if self.audio_state is not None:
            emb = self.encoder.embed_stream(x, [w.end], [self.audio_state])  # type: ignore[attr-defined]
        else:
            emb = self.encoder.embed_audio(x)
        (hits,) = self.library.nearest(self.index, emb, self.k)
        return self.engine.vote(w.t, emb[0], hits)

    def snapshot(self, t: float, silent: bool = False) -> Update:
        return self.engine.snapshot(t, silent)

    def evidence(self) -> K.Evidence:
        """What the identity rests on now (:class:`scoreid.identify.confidence.Evidence`)."""
        return self.engine.evidence()

    def confident(self) -> bool:
        """Whether the top piece is identified: the calibrated probability that it is the piece
        playing is at least the threshold (:mod:`scoreid.identify.confidence`)."""
        return self.engine.confident()
