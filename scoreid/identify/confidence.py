"""How sure the identifier is: the probability that the top piece is the piece playing.

The tally alone cannot say it: votes always go somewhere, so music that is not in the library (or
noise) still gives a top piece with a large share. The evidence of one hop (:class:`Evidence`) is
combined by a logistic model fitted on real performances at several library sizes and under an open
set (``python -m bench.realdev --sizes 40,200,all --open-set --dump D.json``, then
``python -m bench.identity_fit D.json``): evidence that means the same in a 40-piece and a
1000-piece library —

- how much was heard: voting (non-silent) windows so far;
- how the votes fall between the top piece and its runner-up (the log ratio of their tallies; not
  the top piece's share of all votes, which shrinks as the library grows);
- whether the top piece is really being played: the coherence of its score-following track (the
  share of recent hops whose best match lay where the track's tempo predicted it, on the track's
  path or on a look-alike passage moving on beside it, with the audio matching there —
  :meth:`scoreid.identify.follow.PieceTrack.coherence`); chance matches scatter over the piece;
- how much better the stream moves in order through the top piece than through any other followed
  candidate: the margin of its sequence evidence against the library null
  (:mod:`scoreid.identify.follow`) over the best rival's.

``identified`` requires at least ``MIN_VOTING_WINDOWS`` windows of sound (so silence, a click or
audio shorter than a few windows is never an identity), a following coherence of at least
``MIN_COHERENCE`` (the score is being played through, not one spot matched again and again, as
noise or a steady tone do), a sound that moves on (:func:`stillness` at most ``MAX_STILLNESS``:
the stream's own windows ``STILL_LAG_S`` apart are not alike — stationary noise and held tones
embed the same way again and again, music does not, whatever it matches) and a probability of at
least ``THRESHOLD``; otherwise the state is *unknown* (no identity yet, or not in the library).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MIN_VOTING_WINDOWS = 8  #: 4 s of sound at the default hop before anything is identified
#: logistic coefficients over the ``FEATURES`` set (intercept, log1p(windows), log ratio, coherence,
#: sequence margin / SEQUENCE_SCALE), fitted by ``bench/identity_fit.py`` on real performances
#: (real-dev, 85 works of 12 composers, 139 performances, 10/20/30-s excerpts) streamed against
#: libraries of 40, 200 and 887 pieces and, for the open set, against libraries without their work
#: (RESULTS.md "The new real-dev", "The identity before and after", 2026-12-06). The vote share
#: is no longer an input: it shrinks as the library grows (the model before, fitted on a 10-piece
#: synthetic library, named the right piece in 1.4 % of 30-s excerpts against 887 pieces).
COEF = (-7.771, 0.775, 1.081, 4.875, 2.218)
#: probability from which the top piece is reported as identified: the lowest at which no library
#: size ends more than 1 % of the in-library real-dev streams on a wrong identity or names more than
#: 2 % of the out-of-library ones — 0.9 when ``COEF`` was fitted (each work judged by a model fitted
#: on the other works, 2 folds); 0.95 since the coherence counts only hops with a known tempo
#: (2026-12-06, session 23; RESULTS.md "The identity's coherence and look-alike passages"); 0.97
#: since the audio-lead model (2026-12-07, session 30: at 0.95 it named 3.6 % of the out-of-library
#: streams against 40 pieces, 1.4 % at 0.97; a refit on its streams named fewer right pieces;
#: RESULTS.md "The audio-lead model at 1 161 pieces")
THRESHOLD = 0.97
MAX_LOG_RATIO = 5.0
#: on the valid pieces the right top piece's coherence has median 0.95 (10th percentile 0.45),
#: a wrong or out-of-library one 0.15 (90th: 0.5), noise and tones 0.11 (90th: 0.44)
MIN_COHERENCE = 0.5
#: seconds between the two windows whose embeddings :func:`stillness` compares
STILL_LAG_S = 2.0
#: pairs of full windows needed before the sound can be said to move on (at the default hop and a
#: 4.2 s window: from 7 s of audio on)
MIN_STILL_PAIRS = 2
#: the median cosine of window pairs ``STILL_LAG_S`` apart above which the sound stands still: white
#: and pink noise give medians 0.85-0.91 (the `world` candidate of 2026-12-04) or 0.96-0.97 (the model
#: of 2026-11-30), a steady sine 1.0; 40 s of real piano performances (real-dev) -0.03-0.40 and
#: -0.03-0.46 (90th percentile of single pairs up to 0.82 / 0.88)
MAX_STILLNESS = 0.7


#: sequence evidence (decayed log-likelihood ratios, :mod:`scoreid.identify.follow`) enters the
#: features divided by this and clipped to +-``MAX_SEQUENCE``
SEQUENCE_SCALE = 10.0
MAX_SEQUENCE = 5.0
#: the feature sets a model can be fitted on (``python -m bench.identity_fit --features``), by name
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "share": ("intercept", "log1p(windows)", "share", "log ratio", "coherence"),
    "margin": ("intercept", "log1p(windows)", "log ratio", "coherence", "sequence margin"),
    "margin+sequence": (
        "intercept",
        "log1p(windows)",
        "log ratio",
        "coherence",
        "sequence margin",
        "sequence",
    ),
}
#: the feature set ``COEF`` was fitted on
FEATURES = "margin"


@dataclass(frozen=True)
class Evidence:
    windows: int  #: voting windows so far
    share: float  #: top piece's share of the decayed votes
    log_ratio: float  #: log(top tally / runner-up tally), capped at MAX_LOG_RATIO
    coherence: float  #: the top piece's following coherence (0..1)
    stillness: float = 0.0  #: :func:`stillness` of the stream's recent windows (1.0: not known yet)
    sequence: float = 0.0  #: the top piece's sequence evidence (library null)
    sequence_margin: float = 0.0  #: its margin over the best other followed candidate's

    def features(self) -> tuple[float, ...]:
        return features(self, FEATURES)


def _seq(x: float) -> float:
    return max(-MAX_SEQUENCE, min(MAX_SEQUENCE, x / SEQUENCE_SCALE))


def features(ev: Evidence, name: str = FEATURES) -> tuple[float, ...]:
    """The model's inputs from the evidence, for the feature set ``name`` (:data:`FEATURE_SETS`)."""
    ratio = max(-MAX_LOG_RATIO, min(ev.log_ratio, MAX_LOG_RATIO))
    base = (1.0, math.log1p(ev.windows))
    if name == "share":
        return (*base, ev.share, min(ev.log_ratio, MAX_LOG_RATIO), ev.coherence)
    if name == "margin":
        return (*base, ratio, ev.coherence, _seq(ev.sequence_margin))
    if name == "margin+sequence":
        return (*base, ratio, ev.coherence, _seq(ev.sequence_margin), _seq(ev.sequence))
    raise ValueError(f"unknown feature set {name!r}; known: {', '.join(FEATURE_SETS)}")


def gated(ev: Evidence) -> bool:
    """Whether the evidence may name a piece at all: enough sound, a coherent track, a sound that
    moves on (see the module docstring)."""
    return (
        ev.windows >= MIN_VOTING_WINDOWS
        and ev.coherence >= MIN_COHERENCE
        and math.isfinite(ev.share)
        and ev.stillness <= MAX_STILLNESS
    )


def probability(ev: Evidence, coef: tuple[float, ...] = COEF, feature_set: str = FEATURES) -> float:
    """P(the top piece is the one playing | evidence); 0 below MIN_VOTING_WINDOWS or MIN_COHERENCE, or
    above MAX_STILLNESS."""
    if not gated(ev):
        return 0.0
    z = sum(c * f for c, f in zip(coef, features(ev, feature_set)))
    return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))


def evidence_of(
    windows: int,
    ranked: list[tuple[str, float]],
    total: float,
    coherence: float,
    stillness: float = 0.0,
    sequence: float = 0.0,
    sequence_margin: float = 0.0,
) -> Evidence:
    """Evidence from the tally's ranking [(piece, tally)], its total, the top track's coherence, the
    stream's stillness and the top piece's sequence evidence and margin."""
    if not ranked or total <= 0:
        return Evidence(windows, 0.0, 0.0, 0.0, stillness)
    first = ranked[0][1]
    second = ranked[1][1] if len(ranked) > 1 else 0.0
    ratio = MAX_LOG_RATIO if second <= 0 else math.log(max(first, 1e-12) / second)
    return Evidence(windows, first / total, ratio, coherence, stillness, sequence, sequence_margin)


def stillness(times: Sequence[float], embeddings: Sequence[np.ndarray], window_s: float) -> float:
    """Median cosine similarity of the stream's own window embeddings (L2-normalised, oldest first)
    ``STILL_LAG_S`` apart: each window paired with the latest earlier one at least that much older
    (and at most ``2 * STILL_LAG_S``, so pairs span no long silence). Only full windows count (audio
    time >= ``window_s``: the first windows of a stream are zero-padded, and a padded window differs
    from a full one even when the sound stands still). High when the sound stands still (noise, a
    held tone), low while music moves on; 1.0 with fewer than ``MIN_STILL_PAIRS`` pairs (not known
    yet)."""
    t = np.asarray(times, np.float64)
    earlier = np.searchsorted(t, t - STILL_LAG_S + 1e-6, side="right") - 1  # latest window >= the lag older
    j = np.flatnonzero(earlier >= 0)
    i = earlier[j]
    keep = (t[i] >= window_s - 1e-6) & (t[j] - t[i] <= 2 * STILL_LAG_S)
    if int(keep.sum()) < MIN_STILL_PAIRS:
        return 1.0
    e = np.asarray(embeddings, np.float32)
    return float(np.median(np.einsum("nd,nd->n", e[i[keep]], e[j[keep]])))
