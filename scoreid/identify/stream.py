"""Streaming identification: audio in, running identity and score position out.

:class:`Identifier` consumes audio samples (22 050 Hz mono) chunk by chunk through the same
incremental front end the encoder service uses (:class:`scoreid.audio.spectrogram.OnlineSpectrogram`).
Every ``hop_s`` seconds of audio it embeds the latest audio window (the contract's 84 frames
ending at the newest frame, zero padded at the start of the stream), retrieves the top-25 sheet
windows (:class:`scoreid.search.exact.ExactIndex`), lets each vote for its piece into a decaying
:class:`~scoreid.identify.tally.VoteTally` (votes weighted by similarity and normalised for piece
length: :func:`~scoreid.identify.tally.window_votes`), and advances the score follower of the
candidate pieces (:class:`~scoreid.identify.follow.CandidateFollower`, the tally's top 5).

Silent windows (nothing above the level normaliser's floor) cast no votes, so silence never
produces an identity. Every update carries the *identity*: the top piece when the calibrated
probability that it is the piece playing (:mod:`scoreid.identify.confidence`) reaches the
threshold, otherwise ``None`` (unknown: nothing identified yet, or music not in the library).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from scoreid import contract as C
from scoreid.audio.spectrogram import OnlineSpectrogram
from scoreid.identify import confidence as K
from scoreid.identify.follow import CandidateFollower
from scoreid.identify.tally import (
    CHANCE_EXPONENT,
    DEFAULT_HALF_LIFE_S,
    VOTE_TEMPERATURE,
    VoteTally,
    chance_weights,
    window_votes,
)
from scoreid.library.store import Library
from scoreid.search.exact import ExactIndex
from scoreid.sheet import strip as S

TOP_K = 25  #: neighbours per audio window (published)
DEFAULT_HOP_S = 0.5
#: a window whose loudest frame has a log-spectrum mean below this is silence (no vote)
SILENCE_LEVEL = 0.01


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


@dataclass
class Update:
    """The state after one hop: ``t`` seconds of audio, ranking [(piece, score, votes)], positions,
    and the identity (the top piece once it is identified, else ``None``) with its probability."""

    t: float
    ranking: list[tuple[str, float, float]]
    positions: dict[str, dict[str, Any]] = field(default_factory=dict)
    silent: bool = False
    identity: str | None = None
    confidence: float = 0.0

    def to_json(self, k: int | None = 5, final: bool = False) -> dict[str, Any]:
        top = []
        for pid, score, votes in self.ranking[: k if k else None]:
            entry: dict[str, Any] = {"piece": pid, "score": round(score, 4), "votes": round(votes, 3)}
            pos = self.positions.get(pid)
            if pos:
                entry.update(
                    {k: pos[k] for k in ("page", "system", "x", "file", "file_page", "show_page") if k in pos}
                )
                if "y0" in pos:
                    entry["band"] = [pos["y0"], pos["y1"]]
            top.append(entry)
        out: dict[str, Any] = {"t": round(self.t, 3), "identity": self.identity,
                               "confidence": round(self.confidence, 4), "top": top}  # fmt: skip
        if final:
            out["final"] = True
        return out


class Identifier:
    """Running identification of one audio stream against a library."""

    def __init__(self, library: Library, encoder: AudioEncoder, hop_s: float = DEFAULT_HOP_S,
                 half_life: float = DEFAULT_HALF_LIFE_S, k: int = TOP_K,
                 vote_temperature: float = VOTE_TEMPERATURE, chance_exponent: float = CHANCE_EXPONENT,
                 follower: str = "tempo"):  # fmt: skip
        """``vote_temperature=math.inf, chance_exponent=0`` is the published vote scheme;
        ``follower``: ``tempo`` (default), ``hmm`` or ``best`` (:mod:`scoreid.identify.follow`)."""
        if hop_s <= 0:
            raise ValueError(f"hop must be positive, got {hop_s}")
        if len(library) == 0:
            raise ValueError("the library is empty")
        self.library = library
        self.encoder = encoder
        self.index = ExactIndex(library.vectors)
        self.k = k
        if not vote_temperature > 0:
            raise ValueError(f"vote temperature must be positive, got {vote_temperature}")
        self.vote_temperature = vote_temperature
        windows = {pid: e - s for pid, (s, e) in library.rows.items()}
        self.chance = chance_weights(windows, chance_exponent)
        self.hop_frames = max(1, int(round(hop_s * C.FPS)))
        self.frames_window = library.contract.audio_window_frames
        self.front = OnlineSpectrogram()
        self.spec = np.zeros((0, C.N_BINS), np.float32)
        self.tally = VoteTally(half_life)
        self.follower = CandidateFollower(library.rows, library.meta["strip_x"], library.stride,
                                          self.hop_frames / C.FPS, kind=follower)  # fmt: skip
        self.next_frame = self.hop_frames
        self.n_windows = 0
        self.n_voting = 0
        self._offset = 0  # frames dropped from the front of ``spec``

    def push(self, samples: np.ndarray) -> list[Update]:
        """Feed audio samples; returns one :class:`Update` per completed hop."""
        self._append(self.front.push(samples))
        return self._drain()

    def push_frames(self, frames: np.ndarray) -> list[Update]:
        """Feed contract spectrogram frames (T, 92) instead of audio, e.g. a stored corpus
        spectrogram: the same as pushing the audio they were computed from (the online front end
        reproduces the offline spectrogram exactly). Do not mix with :meth:`push` in one stream."""
        frames = np.asarray(frames, np.float32)
        if frames.ndim != 2 or frames.shape[1] != C.N_BINS:
            raise ValueError(f"frames must be (T, {C.N_BINS}), got {frames.shape}")
        self._append(frames)
        return self._drain()

    def finish(self) -> list[Update]:
        """End of stream: flush the front end (and process a last partial hop)."""
        self._append(self.front.flush())
        ups = self._drain()
        if len(self.spec) and self.next_frame - self.hop_frames < len(self.spec):
            ups.append(self._step(len(self.spec)))
        return ups

    def _append(self, frames: np.ndarray) -> None:
        if len(frames):
            self.spec = np.concatenate([self.spec, frames])
            # keep only what the next window needs
            keep = self.frames_window + self.hop_frames
            if len(self.spec) > 4 * keep:
                drop = len(self.spec) - keep
                self.spec = self.spec[drop:]
                self._offset += drop

    def _drain(self) -> list[Update]:
        ups = []
        while self._offset + len(self.spec) >= self.next_frame:
            ups.append(self._step(self.next_frame - self._offset))
            self.next_frame += self.hop_frames
        return ups

    def _step(self, end: int) -> Update:
        """One audio window ending at local frame ``end``."""
        t = (end + self._offset) / C.FPS
        win = S.audio_window(self.spec[:end], end - self.frames_window / 2.0, self.frames_window)
        self.n_windows += 1
        recent = win[-self.hop_frames :]
        silent = float(recent.mean(axis=1).max()) < SILENCE_LEVEL
        if not silent:
            self.n_voting += 1
            emb = self.encoder.embed_audio(S.audio_to_network(win))
            sims, rows = self.index.search(emb, self.k)
            pieces = [str(self.library.meta["piece"][r]) for r in rows[0]]
            hits = [(p, float(sv), self.chance.get(p, 1.0)) for p, sv in zip(pieces, sims[0])]
            self.tally.update(window_votes(hits, self.vote_temperature), t)
            candidates = [pid for pid, _v in self.tally.top(self.follower.max_candidates)]
            self.follower.update(t, emb[0], candidates, self._sims)
        return self.snapshot(t, silent)

    def _sims(self, pid: str, embs: np.ndarray) -> np.ndarray:
        s, e = self.library.rows[pid]
        return np.asarray(embs, np.float32) @ self.library.vectors[s:e].T

    def snapshot(self, t: float, silent: bool = False) -> Update:
        ranked = self.tally.top(len(self.library.piece_ids))
        votes = sum(v for _, v in ranked)
        total = votes or 1.0
        ranking = [(pid, v / total, v) for pid, v in ranked]
        positions = {}
        for pid, _s, _v in ranking[:5]:
            x = self.follower.position_x(pid)
            if x is not None:
                positions[pid] = self.library.at_strip_x(pid, x, speed=self.follower.speed(pid))
        p = K.probability(self._evidence(ranked, votes))
        identity = ranking[0][0] if ranking and p >= K.THRESHOLD else None
        return Update(t, ranking, positions, silent, identity, p)

    def evidence(self) -> K.Evidence:
        """What the identity rests on now (:class:`scoreid.identify.confidence.Evidence`)."""
        return self._evidence(self.tally.top(2), sum(self.tally.tallies.values()))

    def _evidence(self, ranked: list[tuple[str, float]], total: float) -> K.Evidence:
        coherence = self.follower.coherence(ranked[0][0]) if ranked else 0.0
        return K.evidence_of(self.n_voting, ranked[:2], total, coherence)

    def confident(self) -> bool:
        """Whether the top piece is identified: the calibrated probability that it is the piece
        playing is at least the threshold (:mod:`scoreid.identify.confidence`)."""
        return K.probability(self.evidence()) >= K.THRESHOLD
