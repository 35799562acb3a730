"""The identity's gates (scoreid.identify.confidence): a sound that stands still — stationary noise,
a held tone — is never an identity, whatever it matches; music that moves on passes the gate."""

from __future__ import annotations

import numpy as np

from scoreid.identify import confidence as K

HOP = 0.5
WINDOW_S = 4.2


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def stream(embs: np.ndarray, t0: float = HOP) -> tuple[list[float], list[np.ndarray]]:
    return [t0 + HOP * i for i in range(len(embs))], list(embs)


def test_stationary_sound_stands_still_and_music_moves_on():
    rng = np.random.default_rng(0)
    base = rng.normal(size=32)
    noise = unit(base + 0.3 * rng.normal(size=(24, 32)))  # the same sound again and again
    music = unit(rng.normal(size=(24, 32)))  # every window another sound
    assert K.stillness(*stream(noise, 5.0), WINDOW_S) > K.MAX_STILLNESS
    assert K.stillness(*stream(music, 5.0), WINDOW_S) < 0.3


def test_padded_windows_and_too_few_pairs_are_not_known():
    rng = np.random.default_rng(1)
    music = unit(rng.normal(size=(24, 32)))
    times, embs = stream(music[:12])  # t = 0.5 .. 6.0 s: full windows only from 4.5 s on
    assert K.stillness(times, embs, WINDOW_S) == 1.0  # 6.0 - 2.0 < the first full window's pair
    times, embs = stream(music[:14])  # t up to 7.0 s: pairs (4.5, 6.5) and (5.0, 7.0)
    assert K.stillness(times, embs, WINDOW_S) < K.MAX_STILLNESS
    # a gap longer than twice the lag pairs nothing across it
    assert K.stillness([5.0, 5.5, 20.0, 20.5], list(music[:4]), WINDOW_S) == 1.0


def test_probability_is_zero_while_the_sound_stands_still():
    moving = K.Evidence(windows=40, share=0.9, log_ratio=4.0, coherence=1.0, stillness=0.1)
    assert K.probability(moving) >= K.THRESHOLD
    for still in (0.95, 1.0, float("nan")):
        assert K.probability(K.Evidence(40, 0.9, 4.0, 1.0, stillness=still)) == 0.0
