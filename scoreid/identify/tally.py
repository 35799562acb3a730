"""Vote tallies with exponential decay: the reference semantics of the running identity.

Each audio window's nearest sheet windows vote for their pieces. Tallies decay with a half-life
in seconds of audio, so the answer can change when the music changes piece:

    tally[p] <- tally[p] * 2 ** (-(t - t_last) / half_life) + votes[p]

``half_life = inf`` means no decay (the published offline scheme: plain vote counts). Every path
runs this class inside the session engine (:mod:`scoreid.identify.engine`); the aggregator service
keeps its state (:meth:`VoteTally.state`) in Redis between hops.

What one window votes (:func:`window_votes`) goes beyond the published scheme (each of the top-25
neighbours votes 1 for its piece) in two measured ways (BENCHMARKS.md "Time to identify"; chosen on
the validation split, reported on test):

* **chance normalisation** — a piece with many windows collects many votes from a wrong match by
  chance alone, so a long piece out-polls a short right one. Each vote is weighted by
  ``chance_weight = (mean_windows / windows) ** CHANCE_EXPONENT`` (exponent 1 would make every
  piece's expected vote count under a random match the same; 0.75 leaves long pieces some of their
  right matches' weight — 1 over-corrected in a 10-piece library with 8x size ratios), clipped to
  ``[1 / MAX_CHANCE_WEIGHT, MAX_CHANCE_WEIGHT]`` so a tiny piece (a few bars) cannot win on a
  handful of chance matches;
* **similarity weighting** — a neighbour votes ``exp((s - s_best) / VOTE_TEMPERATURE)`` with ``s``
  its cosine similarity and ``s_best`` the window's best, so near-ties count fully and the tail of the
  25 counts little.

With ``temperature=inf`` and no chance weights it is the published scheme (what ``trainer/run.py
eval`` reports as piece identification, to stay comparable with the paper).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Hashable, Iterable, Mapping
from typing import Any, TypeVar

import numpy as np

DEFAULT_HALF_LIFE_S = 20.0
#: similarity temperature of a neighbour's vote (cosine similarity units); inf = every vote 1
VOTE_TEMPERATURE = 0.02
#: tallies that decay below this are dropped (2**-30 of one vote: ~30 half-lives without a vote)
TALLY_FLOOR = 1e-9
#: chance weight = (mean windows per piece / windows of the piece) ** this
CHANCE_EXPONENT = 0.75
#: chance weights are clipped to [1 / this, this]
MAX_CHANCE_WEIGHT = 3.0

K = TypeVar("K", bound=Hashable)  #: a piece key: its id, or an index


def chance_weights(windows: Mapping[K, int], exponent: float = CHANCE_EXPONENT) -> dict[K, float]:
    """Per-piece vote weight ``(mean windows per piece / windows of the piece) ** exponent``
    (1.0 for an average piece; all 1.0 for exponent 0), clipped to ``[1 / MAX_CHANCE_WEIGHT,
    MAX_CHANCE_WEIGHT]``."""
    counts = {p: int(n) for p, n in windows.items() if int(n) > 0}
    if not counts:
        return {}
    mean = sum(counts.values()) / len(counts)
    lo, hi = 1.0 / MAX_CHANCE_WEIGHT, MAX_CHANCE_WEIGHT
    return {p: min(hi, max(lo, (mean / n) ** exponent)) for p, n in counts.items()}


def window_votes(
    hits: Iterable[tuple[K, float, float]], temperature: float = VOTE_TEMPERATURE
) -> dict[K, float]:
    """Votes of one audio window from its neighbours ``(piece, similarity, chance_weight)``.

    Each neighbour votes ``chance_weight * exp((similarity - best) / temperature)`` for its piece;
    ``temperature = inf`` gives every neighbour the weight ``chance_weight`` (1 = published scheme).
    A non-positive or non-finite chance weight counts as 1 (unknown piece size).
    """
    hits = list(hits)
    if not hits:
        return {}
    if not temperature > 0:
        raise ValueError(f"vote temperature must be positive, got {temperature}")
    best = max(float(s) for _, s, _ in hits)
    votes: dict[K, float] = {}
    for piece, sim, w in hits:
        w = float(w) if math.isfinite(w) and w > 0 else 1.0
        v = w if math.isinf(temperature) else w * math.exp((float(sim) - best) / temperature)
        votes[piece] = votes.get(piece, 0.0) + v
    return votes


def decay_factor(dt: float, half_life: float) -> float:
    """Multiplier for tallies after ``dt`` seconds of audio (1.0 for no decay or dt <= 0)."""
    if dt <= 0 or math.isinf(half_life):
        return 1.0
    if half_life <= 0:
        raise ValueError(f"half_life must be positive, got {half_life}")
    return 2.0 ** (-dt / half_life)


def _rank_key(kv: tuple[str, float]) -> tuple[float, str]:
    return -kv[1], kv[0]


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
            if f < 1.0:  # a piece not voted for in ~30 half-lives leaves the tally (bounded state)
                for k in [k for k, v in self.tallies.items() if v < TALLY_FLOOR]:
                    del self.tallies[k]
        for k, v in votes.items():
            self.tallies[k] = self.tallies.get(k, 0.0) + float(v)
        self.t_last = t

    def state(self) -> dict[str, Any]:
        """What the tally holds (for :meth:`from_state`): the time of its last update, its pieces
        in id order and their tallies (float64, exact)."""
        items = sorted(self.tallies.items())
        return {
            "t_last": self.t_last,
            "pieces": [p for p, _v in items],
            "tallies": np.asarray([v for _p, v in items], "<f8"),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], half_life: float = DEFAULT_HALF_LIFE_S) -> VoteTally:
        """The tally :meth:`state` described, decaying with ``half_life`` (ValueError when the
        state does not fit together)."""
        tally = cls(half_life)
        t_last, pieces = state["t_last"], [str(p) for p in state["pieces"]]
        values = np.asarray(state["tallies"], np.float64)
        if values.shape != (len(pieces),):
            raise ValueError(f"tally state: {len(pieces)} pieces, {values.shape} tallies")
        tally.t_last = None if t_last is None else float(t_last)
        tally.tallies = dict(zip(pieces, (float(v) for v in values)))
        return tally

    def top(self, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` best pieces with their tallies, best first (ties broken by piece id)."""
        if k < len(self.tallies) // 4:  # a few of many: a heap, not a full sort (same order)
            return heapq.nsmallest(k, self.tallies.items(), key=_rank_key)
        return sorted(self.tallies.items(), key=_rank_key)[:k]
