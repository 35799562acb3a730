"""Hop windows of a stream: spectrogram frames in, the audio encoder's windows out.

:class:`HopWindows` is the one windowing of every path (``scoreid identify``, the demo, the encoder
service): it keeps the last ``F`` contract frames (zeros before the start of the stream) and emits
a :class:`Window` every ``hop`` frames, each stamped with its audio time ``t = end frame / FPS``
(plus the offset of a resumed session) and whether it is *silent* (:func:`is_silent`: silent
windows cast no vote, so silence never produces an identity). :meth:`HopWindows.finish` emits a
last window when frames arrived after the last hop boundary.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scoreid import contract as C

#: a window whose newest hop has no frame with a log-spectrum mean above this is silence (no vote)
SILENCE_LEVEL = 0.01


def is_silent(excerpt: np.ndarray, hop_frames: int) -> bool:
    """Whether the window's newest ``hop_frames`` frames are all below :data:`SILENCE_LEVEL`."""
    recent = np.asarray(excerpt)[-hop_frames:]
    return not len(recent) or float(recent.mean(axis=1).max()) < SILENCE_LEVEL


def hop_frames_of(hop_s: float) -> int:
    """Spectrogram frames per hop of ``hop_s`` seconds (at least one)."""
    return max(1, int(round(hop_s * C.FPS)))


@dataclass
class Window:
    """One encoder input: the (frames, bins) excerpt ending at spectrogram frame ``end``."""

    excerpt: np.ndarray
    end: int
    t: float  #: seconds of audio at the window's end (session time)
    silent: bool


class HopWindows:
    """Frames in, a window every ``hop_frames`` frames out (see the module docstring)."""

    def __init__(self, hop_frames: int, frames: int = C.AUDIO_WINDOW_FRAMES, t_offset: float = 0.0):
        if hop_frames < 1:
            raise ValueError(f"hop must be at least one frame, got {hop_frames}")
        self.hop = int(hop_frames)
        self.frames = int(frames)
        self.t_offset = float(t_offset)
        self.recent = np.zeros((self.frames, C.N_BINS), np.float32)  # the last `frames` frames, oldest first
        self.n_frames = 0
        self.last_end = 0  # end frame of the last emitted window

    def push(self, frames: np.ndarray) -> list[Window]:
        """Contract frames (T, bins) in; the windows that completed (possibly none)."""
        out = []
        i = 0
        while i < len(frames):  # advance to the next hop boundary (or the end of the new frames)
            take = frames[i : i + self.hop - (self.n_frames % self.hop)]
            self._append(take)
            i += len(take)
            if self.n_frames % self.hop == 0:
                out.append(self._window())
        return out

    def finish(self, frames: np.ndarray | None = None) -> list[Window]:
        """The stream's last frames; a last window if frames arrived since the last hop boundary."""
        out = self.push(frames) if frames is not None and len(frames) else []
        if self.n_frames > self.last_end:
            out.append(self._window())
        return out

    def _window(self) -> Window:
        self.last_end = self.n_frames
        excerpt = self.recent.copy()
        return Window(
            excerpt, self.n_frames, self.t_offset + self.n_frames / C.FPS, is_silent(excerpt, self.hop)
        )

    def _append(self, frames: np.ndarray) -> None:
        n = len(frames)
        if n >= self.frames:
            self.recent[:] = frames[-self.frames :]
        elif n:
            self.recent[:-n] = self.recent[n:]
            self.recent[-n:] = frames
        self.n_frames += n
