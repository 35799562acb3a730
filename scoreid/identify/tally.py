"""Vote tallies with exponential decay: the reference semantics of the running identity.

Each audio window's nearest sheet windows vote for their pieces. Tallies decay with a half-life
in seconds of audio, so the answer can change when the music changes piece:

    tally[p] <- tally[p] * 2 ** (-(t - t_last) / half_life) + votes[p]

``half_life = inf`` means no decay (the published offline scheme: plain vote counts). The
aggregator service implements the same update in Redis and is tested against this class.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

DEFAULT_HALF_LIFE_S = 20.0


def decay_factor(dt: float, half_life: float) -> float:
    """Multiplier for tallies after ``dt`` seconds of audio (1.0 for no decay or dt <= 0)."""
    if dt <= 0 or math.isinf(half_life):
        return 1.0
    if half_life <= 0:
        raise ValueError(f"half_life must be positive, got {half_life}")
    return 2.0 ** (-dt / half_life)


class VoteTally:
    """Decaying per-piece vote tallies for one session."""

    def __init__(self, half_life: float = DEFAULT_HALF_LIFE_S):
        if not half_life > 0:
            raise ValueError(f"half_life must be positive, got {half_life}")
        self.half_life = half_life
        self.t_last: float | None = None
        self.tallies: dict[str, float] = {}

    def update(self, votes: Mapping[str, float], t: float) -> None:
        """Decay to time ``t`` (seconds of audio), then add ``votes``. Time never runs backwards."""
        if self.t_last is not None and t < self.t_last:
            raise ValueError(f"time went backwards: {t} < {self.t_last}")
        f = decay_factor(t - self.t_last, self.half_life) if self.t_last is not None else 1.0
        if f != 1.0:
            for k in self.tallies:
                self.tallies[k] *= f
        for k, v in votes.items():
            self.tallies[k] = self.tallies.get(k, 0.0) + float(v)
        self.t_last = t

    def top(self, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` best pieces with their tallies, best first (ties broken by piece id)."""
        return sorted(self.tallies.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
