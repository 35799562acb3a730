"""Score following of the candidate pieces: where in each the music is *now*.

The vote tally says which pieces are candidates; :class:`CandidateFollower` follows only those (the
top ``max_candidates`` of the tally), so a hop costs the same whatever the library's size. Each
candidate has a :class:`PieceTrack`: a filter over the piece's sheet windows in strip order.

Per hop (one audio window), for a piece with windows ``x_0 < x_1 < …`` (strip px, ``stride``
apart) and ``sim_i`` the cosine similarity of the audio window to window ``i``::

    alpha'[i] = sim_i / T + log( (1 - eps) * sum_d alpha[i - d] * step(d) + eps * mean(alpha) )

``step(d)`` is the chance of advancing ``d`` windows in one hop. Kinds of track:

- ``best``: no filter, the best-matching window of the latest audio window (what the published
  method gives; it jumps between look-alike bars);
- ``hmm``: a fixed kernel favouring small advances (0..J windows; the follower before this module);
- ``tempo``: the kernel is centred on the advance the current tempo predicts (a Gaussian around
  ``v * hop / stride`` mixed with the broad ``hmm`` kernel), ``v`` the piece's speed in strip px per
  second of audio, fitted to the track's own recent path; the position is the posterior mean around
  the best state (sub-window resolution); and it reports where the music is *now*: the audio
  window that ends at ``t`` is centred on the music of ``t - lag_s`` (half the model's window), so the
  matched position is moved on by ``v * lag_s``. A jump (repeat, cut, a performer starting
  elsewhere) is reported only when the filter has held it for ``CONFIRM_HOPS`` hops, and small
  backward moves are held, so the reported position does not jitter backwards;
- ``guard``: ``tempo`` that survives look-alike passages (a reprise, a rondo's refrain, a fugue's
  entries: issue 29; the engine's default). Its filter is ``tempo``'s with a ten times rarer jump
  anywhere (``GUARD_JUMP_PROB``: a jump costs more than continuing), and the position reported
  differs. While the filter's best state lies off the track's path (more than ``JUMP_WINDOWS``
  from where the track's tempo puts it), the track reports its best state *on* the path, and
  switches to the rival region only when the new audio has matched the rival better than the path
  by ``SWITCH_NATS`` (summed over ``SWITCH_HOPS`` or more hops in a row, the rival moving on at the
  track's tempo). The test is the audio's fresh evidence, not the filter's posterior: once a
  look-alike has won the filter (a slight, sustained edge is enough), identical music keeps it
  there, but it never earns the evidence a real jump does (the path's own music no longer
  sounding: several nats a hop).

A piece that becomes a candidate is caught up on the recent audio windows (a ring buffer of
embeddings), so its position is known at once. When those windows still hold the stream's first,
the ``tempo``/``guard`` filter starts from :func:`start_prior` (most performances start at the
opening: half the prior on the opening windows), which settles a tie between the opening and a
written-out reprise of it for the opening; music heard elsewhere outweighs it within a hop or two.

Sequence evidence (how well a candidate's stream moves through it in order) is kept two ways, each a
decayed sum of per-hop log-likelihood ratios whose numerator is the track's predictive likelihood
``log sum_i pred_i e^{sim_i / T}``: ``piece`` divides by "anywhere in this piece" (the mean over the
piece's own windows: its per-hop maximum is log n, so long pieces can earn more), ``library`` by
"one of the window's best matches anywhere in the library" (the mean of ``e^{sim / T}`` over the
hop's search hits: the same for every candidate, so a piece's length gives it nothing).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scoreid import contract as C

TEMPERATURE = 0.1  #: emission temperature on cosine similarity
JUMP_PROB = 0.02  #: chance per hop of a jump anywhere within the piece (a repeat, a cut, a new start)
#: fastest reading speed of the broad kernel, strip px per second of audio (2x a fast engraving)
MAX_SPEED_PX_S = 300.0
#: how far back the matched audio window's centre lies: half the audio window (the contract's
#: default; a track takes its model's window length, ``lag_s``)
LAG_S = C.AUDIO_WINDOW_FRAMES / 2.0 / C.FPS


def lag_of(window_frames: int, lead_frames: int = 0) -> float:
    """Seconds from the music an audio window of ``window_frames`` frames is matched to (its centre,
    or ``lead_frames`` after it: :attr:`scoreid.contract.Contract.audio_lead_frames`) to its end."""
    return (window_frames / 2.0 - lead_frames) / C.FPS


DEFAULT_SPEED_PX_S = 80.0  #: speed assumed before a track has a path to fit one
SPEED_FIT_S = 8.0  #: seconds of path the speed is fitted to
MIN_FIT_HOPS = 6  #: hops of path needed before the speed is trusted
TEMPO_MIX = 0.25  #: weight of the broad kernel in the tempo kernel
CONFIRM_HOPS = 2  #: hops a jump must hold before it is reported
JUMP_WINDOWS = 4.0  #: a move this many windows away from the prediction is a jump
HISTORY_HOPS = 24  #: audio windows kept to catch up a new candidate
PATH_HOPS = 64  #: matched positions a track keeps (the speed is fitted to the last SPEED_FIT_S of them)
COHERENCE_HOPS = 20  #: hops over which a track's coherence (share of hops matched where predicted) is taken
#: hops with a known tempo a track needs before its coherence is more than 0 (hops before its tempo is
#: known are not counted: they are neither in step nor out of it)
MIN_COHERENCE_HOPS = 6
#: a hop is in step (``PieceTrack.coherence``) only where the audio window matches some window near
#: the filter's best state within this many nats (similarity / TEMPERATURE) of its best match anywhere
#: in the piece
STEP_SUPPORT_NATS = 2.0
MIN_MOVING_PX_S = 15.0  #: a track slower than this is not music being played (noise, a held sound)
KINDS = ("best", "hmm", "tempo", "guard")
CANDIDATES = 10  #: pieces of the tally followed by default (RESULTS.md "Sequence evidence": 5 -> 10)
EVIDENCE_KINDS = ("piece", "library")  #: the null of the sequence evidence (see the module docstring)
EVIDENCE_HALF_LIFE_S = 10.0  #: half-life of a track's sequence evidence, seconds of audio
#: the broad kernel reaches at least this many times :data:`DEFAULT_SPEED_PX_S`
BROAD_REACH_DEFAULTS = 2.5
#: the broad kernel's weights fall e-fold every (its reach / this) windows, but no faster than per window
BROAD_FALLS = 2.0
#: the tempo kernel's spread (windows) around the advance it expects: this much at a standstill ...
TEMPO_SD_WINDOWS = 0.35
#: ... plus this much per window of expected advance
TEMPO_SD_PER_WINDOW = 0.25
#: a fitted speed is clipped to [0, this x MAX_SPEED_PX_S]
MAX_FIT_SPEEDS = 3.0
#: the position is the posterior mean over the best state and this many windows on each side of it
POSTERIOR_WINDOWS = 2
#: a backward move of less than this many windows is held (the reported position does not jitter back)
HOLD_BACK_WINDOWS = 1.0
#: the predicted probability of a state is at least this (its log stays finite)
PROB_FLOOR = 1e-300
#: ``guard``: chance per hop of a jump anywhere (a jump costs log(n / GUARD_JUMP_PROB) nats of evidence;
#: real-dev: 0.002 beat 0.02 by 1.0 point within 1 s, 1.0 right system; BENCHMARKS.md)
GUARD_JUMP_PROB = 0.002
#: ``guard``: a rival region (the filter's best state off the track's path) replaces the track's
#: own only when the audio has matched it better than the track's best state on its path by this
#: many nats (sims / TEMPERATURE) summed over the hops in a row it was the filter's best ...
SWITCH_NATS = 8.0
#: ... and for at least this many hops (moving on at the track's tempo)
SWITCH_HOPS = 2
#: a track whose first window is the stream's first puts this share of its prior on the piece's
#: opening (most performances start there): it settles a tie between look-alike passages (the
#: opening theme and its reprise) for the opening, and is outweighed within a hop or two when the
#: music heard is elsewhere (0: a uniform prior)
START_PRIOR = 0.5
#: the opening: the windows within this many seconds of music at the fastest reading speed of the
#: first window's centre (:data:`MAX_SPEED_PX_S`; its own lag plus this)
START_SLACK_S = 1.0


def _logsumexp(a: np.ndarray) -> float:
    m = float(a.max())
    return m + math.log(float(np.exp(a - m).sum()))


def _logmeanexp(a: np.ndarray) -> float:
    return _logsumexp(a) - math.log(len(a))


def start_prior(strip_x: np.ndarray, lag_s: float, share: float | None = None) -> np.ndarray:
    """log prior over a piece's windows for a stream's first window: ``share`` (default
    :data:`START_PRIOR`) spread over the opening (the windows the first window's centre can reach
    at the fastest reading speed), the rest over every window."""
    share = START_PRIOR if share is None else share
    x = np.asarray(strip_x, np.float64)
    opening = x <= x[0] + MAX_SPEED_PX_S * (lag_s + START_SLACK_S)
    p = (1.0 - share) / len(x) + share * opening / max(1, int(opening.sum()))
    return np.log(p)


def broad_kernel(max_step: int) -> np.ndarray:
    """step(d), d = 0..max_step: small advances favoured (the ``hmm`` kernel)."""
    w = np.exp(-np.arange(max_step + 1) / max(1.0, max_step / BROAD_FALLS))
    return w / w.sum()


def tempo_kernel(expected: float, broad: np.ndarray) -> np.ndarray:
    """step(d): a Gaussian around ``expected`` windows per hop, mixed with the ``broad`` kernel."""
    d = np.arange(len(broad), dtype=np.float64)
    sd = TEMPO_SD_WINDOWS + TEMPO_SD_PER_WINDOW * expected
    g = np.exp(-0.5 * ((d - expected) / sd) ** 2)
    w = (1 - TEMPO_MIX) * g / g.sum() + TEMPO_MIX * broad
    return w / w.sum()


@dataclass
class PieceTrack:
    """The filter of one piece: ``strip_x`` (n,) window centres in strip order."""

    strip_x: np.ndarray
    stride: float
    hop_s: float
    kind: str = "tempo"
    lag_s: float = LAG_S  #: half the model's audio window (where the matched music lies behind now)
    alpha: np.ndarray | None = None
    path: deque = field(default_factory=lambda: deque(maxlen=PATH_HOPS))  # (t, x) of the matched position
    speed: float = DEFAULT_SPEED_PX_S
    reported: float | None = None
    pending: tuple[float, int] | None = None  # a jump target (x) and for how many hops it held
    steady: deque = field(default_factory=lambda: deque(maxlen=COHERENCE_HOPS))  # matched where predicted?
    evidence: float = 0.0  #: decayed sum of the per-hop sequence log-likelihood ratios (see ``update``)
    evidence_library: float = 0.0  #: the same against the library null (module docstring)
    #: ``guard``: the rival region the filter prefers: (t, x, hops in a row, nats it matched better)
    rival: tuple[float, float, int, float] | None = None
    #: the filter's best state at the previous hop, (t, matched x): a look-alike passage the filter
    #: prefers while the guard holds the track's path still moves on in step (``coherence``)
    mode: tuple[float, float] | None = None
    _emission: np.ndarray | None = None  #: the latest hop's sims / T (within ``update`` only)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"follower kind must be one of {KINDS}, got {self.kind!r}")
        speed_max = max(MAX_SPEED_PX_S, BROAD_REACH_DEFAULTS * DEFAULT_SPEED_PX_S)
        self.max_step = max(1, int(math.ceil(speed_max * self.hop_s / self.stride)) + 1)
        self.broad = broad_kernel(self.max_step)

    def update(self, t: float, sims: np.ndarray, null: float | None = None, first: bool = False) -> None:
        """One audio window: its similarities to the piece's windows, and ``null`` =
        ``log mean e^{sim/T}`` over the window's search hits (None: unknown, the piece null is used);
        ``first``: it is the stream's first window (the filter starts from :func:`start_prior`)."""
        e = np.asarray(sims, np.float64) / TEMPERATURE
        self._emission = e
        a = e
        if self.kind in ("tempo", "guard") and self.alpha is None and first:
            a = e + start_prior(self.strip_x, self.lag_s)
        if self.kind != "best" and self.alpha is not None:
            kernel = self.broad
            if self.kind in ("tempo", "guard") and self._speed_known():
                kernel = tempo_kernel(self.speed * self.hop_s / self.stride, self.broad)
            a = e + self._predict(self.alpha, kernel)
            # sequence evidence: how much better the filter's prediction explains this window than
            # "anywhere in the piece" (a uniform prior over its windows) or "anywhere in the library"
            predictive = _logsumexp(a)
            piece_null = _logmeanexp(e)
            decay = 2.0 ** (-self.hop_s / EVIDENCE_HALF_LIFE_S)
            self.evidence = self.evidence * decay + predictive - piece_null
            lib_null = piece_null if null is None else null
            self.evidence_library = self.evidence_library * decay + predictive - lib_null
        a = a - a.max()
        self.alpha = a - math.log(np.exp(a).sum())
        self._observe(t)

    def _predict(self, a: np.ndarray, step: np.ndarray) -> np.ndarray:
        """log of (1 - eps) * (forward steps) + eps * (jump anywhere), computed in the linear domain
        relative to the best state (one convolution instead of a log-sum per step)."""
        top = float(a.max())
        p = np.exp(a - top)
        moved = np.convolve(p, step)[: len(p)]
        eps = GUARD_JUMP_PROB if self.kind == "guard" else JUMP_PROB
        pred = (1 - eps) * moved + eps * p.mean()
        return np.log(np.maximum(pred, PROB_FLOOR)) + top

    def _speed_known(self) -> bool:
        return len(self.path) >= MIN_FIT_HOPS

    def matched_x(self) -> float:
        """Strip x of the audio window's centre: the best state, refined by the posterior mean
        over its neighbours (``best`` and ``hmm``: the best state's centre)."""
        assert self.alpha is not None
        return self._refined(int(np.argmax(self.alpha)))

    def _refined(self, i: int) -> float:
        """Strip x of state ``i`` refined by the posterior mean over its neighbours (``tempo``,
        ``guard``)."""
        assert self.alpha is not None
        if self.kind not in ("tempo", "guard"):
            return float(self.strip_x[i])
        lo, hi = max(0, i - POSTERIOR_WINDOWS), min(len(self.alpha), i + POSTERIOR_WINDOWS + 1)
        p = np.exp(self.alpha[lo:hi] - self.alpha[i])
        return float(np.dot(p, self.strip_x[lo:hi]) / p.sum())

    def _observe(self, t: float) -> None:
        x = self.matched_x()
        if self.path and self._speed_known():  # the music of a piece that is playing moves on at its tempo
            self.steady.append(self._in_step(t, x) and self.speed >= MIN_MOVING_PX_S)
        self.mode = (t, x)
        if self.kind not in ("tempo", "guard"):
            self.reported = x
            self.path.append((t, x))
            self._fit_speed()
            return
        switched = False
        if self.kind == "guard":
            x, switched = self._guarded(t, x)
        now = x + self.speed * self.lag_s
        if switched:  # a rival held long enough: it is the jump (no further CONFIRM_HOPS)
            self.path.clear()
            self.pending = None
            self._accept(t, x, now)
            return
        if self.reported is None:
            self._accept(t, x, now)
            return
        predicted = self.reported + self.speed * self.hop_s
        if abs(now - predicted) > JUMP_WINDOWS * self.stride:  # a jump: report it once it holds
            if self.pending is not None and abs(self.pending[0] - now) <= JUMP_WINDOWS * self.stride:
                self.pending = (now, self.pending[1] + 1)
            else:
                self.pending = (now, 1)
            if self.pending[1] >= CONFIRM_HOPS:
                self.path.clear()
                self.pending = None
                self._accept(t, x, now)
            else:
                self.reported = predicted
            return
        self.pending = None
        self.path.append((t, x))
        self._fit_speed()
        now = x + self.speed * self.lag_s
        held = now > self.reported - HOLD_BACK_WINDOWS * self.stride
        self.reported = max(now, self.reported) if held else now

    def _in_step(self, t: float, x: float) -> bool:
        """Whether the filter's best state ``x`` lies where the track's tempo predicts — from the
        track's path, or from the filter's own best state a hop ago (the filter prefers a look-alike
        passage the guard keeps the track off, and that passage moves on in step: the piece's music
        is still matched in order) — and the audio itself puts it there: the window matches some
        window near ``x`` within ``STEP_SUPPORT_NATS`` of its best match anywhere in the piece (the
        filter's prediction alone carries a best state on in step through noise)."""
        assert self._emission is not None
        reach = JUMP_WINDOWS * self.stride
        anchors = [self.path[-1]] + ([self.mode] if self.mode is not None else [])
        if not any(abs(x - (x0 + self.speed * (t - t0))) <= reach for t0, x0 in anchors):
            return False
        lo = int(np.searchsorted(self.strip_x, x - reach))
        hi = int(np.searchsorted(self.strip_x, x + reach, side="right"))
        e = self._emission
        return hi > lo and float(e[lo:hi].max()) >= float(e.max()) - STEP_SUPPORT_NATS

    def _guarded(self, t: float, x: float) -> tuple[float, bool]:
        """``guard``: the matched x, or, while the filter's best state ``x`` lies off the track's
        path (a rival region: a look-alike passage, or a real jump), the best state on the path —
        until the audio has matched the rival better than the path by SWITCH_NATS summed over
        SWITCH_HOPS or more hops in a row (the rival moving on at the track's tempo); then
        ``(x, True)``: the track jumps there. The filter's posterior is not the test: once a rival
        has won it, identical music keeps it there; the audio's new evidence decides, so a
        look-alike passage that matches as well as the path never takes the track, and a real
        jump (the path's music no longer sounding) does within a few hops. Before the track has a
        tempo (lock-on) the filter's best state is taken, as ``tempo`` takes it."""
        assert self.alpha is not None and self._emission is not None
        if not (self.path and self._speed_known()):
            self.rival = None
            return x, False
        reach = JUMP_WINDOWS * self.stride
        t0, x0 = self.path[-1]
        expected = x0 + self.speed * (t - t0)
        if abs(x - expected) <= reach:  # on the path
            self.rival = None
            return x, False
        lo = int(np.searchsorted(self.strip_x, expected - reach))
        hi = int(np.searchsorted(self.strip_x, expected + reach))
        if hi <= lo:  # the path left the strip
            self.rival = None
            return x, False
        j = int(lo + np.argmax(self.alpha[lo:hi]))
        better = float(self._emission[int(np.argmax(self.alpha))] - self._emission[j])
        hops, nats = 1, better
        if self.rival is not None:
            rt, rx, n, s = self.rival
            if abs(x - (rx + self.speed * (t - rt))) <= reach:
                hops, nats = n + 1, s + better
        self.rival = (t, x, hops, nats)
        if hops >= SWITCH_HOPS and nats >= SWITCH_NATS:
            self.rival = None
            return x, True
        return self._refined(j), False

    def _accept(self, t: float, x: float, now: float) -> None:
        self.path.append((t, x))
        self.reported = now

    def _fit_speed(self) -> None:
        if not self._speed_known():
            return
        t_end = self.path[-1][0]
        pts = np.array(self.path)
        pts = pts[pts[:, 0] >= t_end - SPEED_FIT_S]
        if len(pts) < MIN_FIT_HOPS:
            return
        dt, dx = pts[:, 0] - pts[:, 0].mean(), pts[:, 1] - pts[:, 1].mean()
        slope = float(np.dot(dt, dx) / max(float(np.dot(dt, dt)), 1e-12))  # least squares
        self.speed = float(np.clip(slope, 0.0, MAX_FIT_SPEEDS * MAX_SPEED_PX_S))

    def coherence(self) -> float:
        """Share of the recent hops in step (:meth:`_in_step`: the filter's best state where the
        track's tempo predicted — from the track's path or from the best state a hop before — and
        the audio matching there), while the track moves on; only hops judged since the track had a
        tempo count, and it is 0 until ``MIN_COHERENCE_HOPS`` of them: high while the piece is
        really playing, also while the filter prefers a look-alike passage moving on in step beside
        the track's path; low for chance matches that scatter over the piece and for a match that
        stands still (noise, a held sound)."""
        return float(np.mean(self.steady)) if len(self.steady) >= MIN_COHERENCE_HOPS else 0.0

    def position_x(self) -> float | None:
        """Reported strip x (where the music is now), clipped to the strip."""
        if self.reported is None:
            return None
        return float(np.clip(self.reported, self.strip_x[0], self.strip_x[-1]))

    def state(self) -> dict[str, Any]:
        """What the track has learnt (for :meth:`from_state`): JSON values and one array, the
        filter's ``alpha`` (float64, exact; None before the first window)."""
        return {
            "alpha": None if self.alpha is None else np.asarray(self.alpha, "<f8"),
            "path": [[t, x] for t, x in self.path],
            "speed": self.speed,
            "reported": self.reported,
            "pending": None if self.pending is None else list(self.pending),
            "steady": [bool(v) for v in self.steady],
            "evidence": self.evidence,
            "evidence_library": self.evidence_library,
            "rival": None if self.rival is None else list(self.rival),
            "mode": None if self.mode is None else list(self.mode),
        }

    @classmethod
    def from_state(
        cls,
        state: Mapping[str, Any],
        strip_x: np.ndarray,
        stride: float,
        hop_s: float,
        kind: str = "tempo",
        lag_s: float = LAG_S,
    ) -> PieceTrack:
        """The track :meth:`state` described, over the same windows ``strip_x`` (the other
        arguments as the constructor's); ValueError when its filter is not over ``strip_x``."""
        track = cls(strip_x, stride, hop_s, kind, lag_s)
        if state["alpha"] is not None:
            alpha = np.asarray(state["alpha"], np.float64)
            if alpha.shape != (len(strip_x),):
                raise ValueError(
                    f"track state: a filter over {alpha.shape} windows, the piece has {len(strip_x)}"
                )
            track.alpha = alpha
        track.path.extend((float(t), float(x)) for t, x in state["path"])
        track.speed = float(state["speed"])
        track.reported = None if state["reported"] is None else float(state["reported"])
        pending = state["pending"]
        track.pending = None if pending is None else (float(pending[0]), int(pending[1]))
        track.steady.extend(bool(v) for v in state["steady"])
        track.evidence = float(state["evidence"])
        track.evidence_library = float(state["evidence_library"])
        rival = state["rival"]
        track.rival = (
            None if rival is None else (float(rival[0]), float(rival[1]), int(rival[2]), float(rival[3]))
        )
        mode = state["mode"]
        track.mode = None if mode is None else (float(mode[0]), float(mode[1]))
        return track


class CandidateFollower:
    """Follows the candidate pieces of a library (rows contiguous per piece, in strip order)."""

    def __init__(
        self,
        rows: dict[str, tuple[int, int]],
        strip_x: np.ndarray,
        stride: float,
        hop_s: float,
        kind: str = "tempo",
        max_candidates: int = CANDIDATES,
        lag_s: float = LAG_S,
    ):
        if kind not in KINDS:
            raise ValueError(f"follower kind must be one of {KINDS}, got {kind!r}")
        self.rows = rows
        self.strip_x = np.asarray(strip_x, np.float64)
        self.stride = float(stride)
        self.hop_s = float(hop_s)
        self.kind = kind
        self.max_candidates = max_candidates
        self.lag_s = float(lag_s)
        self.tracks: dict[str, PieceTrack] = {}
        self.history: deque = deque(maxlen=HISTORY_HOPS)  # (t, embedding)
        #: windows followed since the stream began (the history holds its first while <= maxlen)
        self.seen = 0

    def update(
        self,
        t: float,
        emb: np.ndarray,
        candidates: Sequence[str],
        sims_of: Callable[[str, np.ndarray], np.ndarray],
        null: float | None = None,
    ) -> None:
        """One audio window at ``t`` with embedding ``emb``; ``sims_of(pid, embs)`` gives the
        cosine similarities (len(embs), n_windows) of embeddings to the piece's windows; ``null``:
        the window's library null (:func:`library_null` of its search hits)."""
        emb = np.asarray(emb, np.float32).reshape(-1)
        self.history.append((t, emb, null))
        self.seen += 1
        keep = [p for p in candidates[: self.max_candidates] if p in self.rows]
        for pid in list(self.tracks):
            if pid not in keep:
                del self.tracks[pid]
        for pid in keep:
            track = self.tracks.get(pid)
            if track is None:  # a new candidate: catch up on the recent windows
                s, e = self.rows[pid]
                track = PieceTrack(self.strip_x[s:e], self.stride, self.hop_s, self.kind, self.lag_s)
                sims = sims_of(pid, np.stack([h[1] for h in self.history]))
                from_start = self.seen == len(self.history)  # the stream's first window is among them
                for i, ((tt, _emb, nl), row) in enumerate(zip(self.history, sims)):
                    track.update(tt, row, nl, first=from_start and i == 0)
                self.tracks[pid] = track
            else:
                track.update(t, sims_of(pid, emb[None])[0], null)

    def state(self) -> dict[str, Any]:
        """What the follower holds (for :meth:`load_state`): its recent windows (times, library
        nulls, embeddings as one float32 array) and each candidate's track state."""
        hist = list(self.history)
        embs = np.stack([h[1] for h in hist]).astype("<f4") if hist else np.zeros((0, 0), "<f4")
        return {
            "history": {"t": [h[0] for h in hist], "null": [h[2] for h in hist], "embeddings": embs},
            "seen": self.seen,
            "tracks": {pid: track.state() for pid, track in self.tracks.items()},
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Take the windows and tracks of :meth:`state` (of a follower of the same settings). A
        track whose piece left the library or has another number of windows now is dropped: it
        is rebuilt from the recent windows when the piece is a candidate again."""
        h = state["history"]
        ts, nulls, embs = list(h["t"]), list(h["null"]), np.asarray(h["embeddings"], np.float32)
        if not len(ts) == len(nulls) == len(embs) <= HISTORY_HOPS or (len(embs) and embs.ndim != 2):
            raise ValueError("follower state: recent windows of the wrong shape")
        seen = state["seen"]
        if not isinstance(seen, int) or isinstance(seen, bool) or seen < len(ts):
            raise ValueError("follower state: fewer windows seen than it holds")
        self.history.clear()
        self.history.extend(
            (float(t), e, None if nl is None else float(nl)) for t, e, nl in zip(ts, embs, nulls)
        )
        self.seen = seen
        self.tracks = {}
        for pid, track in state["tracks"].items():
            rows = self.rows.get(pid)
            if rows is None or track["alpha"] is None or len(track["alpha"]) != rows[1] - rows[0]:
                continue
            s, e = rows
            self.tracks[pid] = PieceTrack.from_state(
                track, self.strip_x[s:e], self.stride, self.hop_s, self.kind, self.lag_s
            )

    def position_x(self, pid: str) -> float | None:
        track = self.tracks.get(pid)
        return None if track is None else track.position_x()

    def speed(self, pid: str) -> float | None:
        track = self.tracks.get(pid)
        return None if track is None else track.speed

    def coherence(self, pid: str) -> float:
        track = self.tracks.get(pid)
        return 0.0 if track is None else track.coherence()

    def evidence(self, pid: str, kind: str = "piece") -> float:
        """The piece's sequence evidence against the ``kind`` null (0 when it has no track)."""
        track = self.tracks.get(pid)
        if track is None:
            return 0.0
        return track.evidence_library if kind == "library" else track.evidence


def library_null(sims: Sequence[float]) -> float | None:
    """``log mean e^{sim/T}`` over a window's search hits: "one of its best matches anywhere in the
    library", the null of the ``library`` sequence evidence (None without hits)."""
    if len(sims) == 0:
        return None
    return _logmeanexp(np.asarray(sims, np.float64) / TEMPERATURE)
