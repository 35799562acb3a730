"""Test-time tempo levers of ``bench.realdev``: the query heard slower or faster than it was played.

Two ways to ask whether a real performance's tempo, against the tempi the model was trained on,
is what keeps a piece from being recognised (RESULTS.md, "Test-time tempo"):

- :func:`stretch_frames` (``--stretch F``): the whole excerpt's spectrogram stretched in time by F
  (> 1: as if played F times slower) before it is windowed;
- :class:`TempoVotes` (``--tempo-votes 0.8,1,1.25``): every hop's window embedded at each factor
  (the window's newest ``frames / F`` frames resampled to ``frames``), and the neighbours of all of
  them vote in the one tally; the follower gets the unstretched window's embedding (factor 1 must be
  in the list). An ensemble over tempi, at one encoder pass per factor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from scoreid.identify.engine import Update
from scoreid.identify.stream import Identifier
from scoreid.identify.windows import HopWindows, Window
from scoreid.tensors import audio_to_network


def resample_frames(frames: np.ndarray, n: int) -> np.ndarray:
    """Spectrogram ``frames`` (T, bins) resampled in time to ``n`` frames, each interpolated
    linearly between its two nearest source frames; the first and last frames are kept."""
    x = np.asarray(frames, np.float32)
    if n < 1 or not len(x):
        raise ValueError(f"cannot resample {len(x)} frames to {n}")
    if len(x) < 2:
        return np.repeat(x, n, axis=0)
    src = np.linspace(0.0, len(x) - 1.0, n)
    i0 = np.minimum(np.floor(src).astype(int), len(x) - 2)
    w = (src - i0)[:, None].astype(np.float32)
    return (x[i0] * (1 - w) + x[i0 + 1] * w).astype(np.float32)


def stretch_frames(frames: np.ndarray, factor: float) -> np.ndarray:
    """Spectrogram ``frames`` (T, bins) stretched in time by ``factor`` (> 1: longer, as if played
    ``factor`` times slower): round(T x factor) frames (:func:`resample_frames`)."""
    if not factor > 0:
        raise ValueError(f"stretch must be positive, got {factor}")
    return resample_frames(frames, max(1, int(round(len(frames) * factor))))


class TempoVotes(Identifier):
    """An :class:`~scoreid.identify.stream.Identifier` whose every window votes at several tempo
    factors (see the module docstring). Embeds windows whole (no incremental encoder state)."""

    def __init__(self, library: Any, encoder: Any, factors: Sequence[float], **changes: Any):
        super().__init__(library, encoder, **changes)
        self.factors = [float(f) for f in factors]
        if 1.0 not in self.factors or not all(f > 0 for f in self.factors):
            raise ValueError(f"tempo factors must be positive and include 1, got {factors}")
        self.frames = library.contract.audio_window_frames
        context = int(np.ceil(self.frames / min(self.factors)))
        self.windows = HopWindows(self.settings.hop_frames, max(self.frames, context))
        self.audio_state = None

    def _step(self, w: Window) -> Update:
        self.n_windows += 1
        if w.silent:
            return self.engine.silent(w.t)
        xs = [resample_frames(w.excerpt[-int(round(self.frames / f)) :], self.frames) for f in self.factors]
        emb = self.encoder.embed_audio(audio_to_network(np.stack(xs)))
        hits = sorted(
            (h for hs in self.library.nearest(self.index, emb, self.k) for h in hs), key=lambda h: -h[1]
        )
        return self.engine.vote(w.t, emb[self.factors.index(1.0)], hits)
