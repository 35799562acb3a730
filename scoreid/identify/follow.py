"""Score following: where in the top piece the music is, moving forward through the score.

Beyond the published (offline, per-window) method. Each library window is an HMM state; a piece's
states are ordered along its unrolled strip. Every audio window (one per hop) updates a filtered
log-probability over all states:

    alpha'[i] = emission[i] + log( sum_{d=0..J} alpha[i - d] * p_step(d)  +  eps * (jump anywhere) )

with the emission the cosine similarity of the audio embedding to window i divided by a
temperature, steps of 0..J windows forward within the same piece (J covers the fastest plausible
reading speed for one hop), and a small probability ``eps`` of a jump anywhere in the piece
(repeats, a performer starting elsewhere). The reported position of a piece is its state with the
highest filtered probability. Without the transition term this reduces to the raw best match of
the current window, which jumps between similar-looking bars; the forward model keeps the
position moving forward and stable.
"""

from __future__ import annotations

import math

import numpy as np

#: emission temperature on cosine similarity
TEMPERATURE = 0.1
#: probability mass for a jump anywhere within the piece, per hop
JUMP_PROB = 0.02
#: fastest reading speed covered by a forward step, strip px (contract scale) per second of audio
MAX_SPEED_PX_S = 160.0


class ScoreFollower:
    """Filtered position over all library windows; pieces are contiguous row ranges."""

    def __init__(self, rows: dict[str, tuple[int, int]], stride_px: float, hop_s: float):
        self.rows = rows
        n = max((e for _, e in rows.values()), default=0)
        self.n = n
        self.piece_of = np.zeros(n, np.int32)
        self.starts = np.zeros(n, np.int64)
        self.ids = sorted(rows)
        for k, pid in enumerate(self.ids):
            s, e = rows[pid]
            self.piece_of[s:e] = k
            self.starts[s:e] = s
        self.max_step = max(1, int(math.ceil(MAX_SPEED_PX_S * hop_s / stride_px)))
        # forward steps 0..J, favouring small advances
        w = np.exp(-np.arange(self.max_step + 1) / max(1.0, self.max_step / 2.0))
        self.log_step = np.log(w / w.sum())
        self.alpha: np.ndarray | None = None

    def update(self, sims: np.ndarray) -> None:
        """Advance by one hop given the audio window's cosine similarity to every library row."""
        emit = np.asarray(sims, np.float64) / TEMPERATURE
        if self.alpha is None:
            self.alpha = self._normalise(emit)
            return
        a = self.alpha
        # forward steps within the same piece
        acc = np.full(self.n, -np.inf)
        for d in range(self.max_step + 1):
            shifted = np.full(self.n, -np.inf)
            shifted[d:] = a[: self.n - d] if d else a
            same = np.zeros(self.n, bool)
            same[d:] = self.piece_of[d:] == self.piece_of[: self.n - d] if d else True
            acc = np.logaddexp(acc, np.where(same, shifted + self.log_step[d], -np.inf))
        # jump anywhere within the piece: (1 - eps) * step + eps * mean over the piece
        jump = np.zeros(self.n)
        for _pid, (s, e) in self.rows.items():
            if e > s:
                jump[s:e] = np.logaddexp.reduce(a[s:e]) - math.log(e - s)
        pred = np.logaddexp(math.log(1 - JUMP_PROB) + acc, math.log(JUMP_PROB) + jump)
        self.alpha = self._normalise(pred + emit)

    def _normalise(self, x: np.ndarray) -> np.ndarray:
        """Normalise within each piece (the identity comes from the vote tally, not from here)."""
        out = np.array(x, np.float64)
        for s, e in self.rows.values():
            if e > s:
                out[s:e] -= np.logaddexp.reduce(out[s:e])
        return out

    def position(self, pid: str) -> int | None:
        """Library row of the followed position in piece ``pid`` (None before the first update)."""
        if self.alpha is None or pid not in self.rows:
            return None
        s, e = self.rows[pid]
        if e <= s:
            return None
        return s + int(np.argmax(self.alpha[s:e]))
