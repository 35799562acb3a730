"""The front end: 92 bins at 20 fps, online == offline, level-robust, madmom framing rules."""

from __future__ import annotations

import numpy as np
import pytest

from scoreid import contract as C
from scoreid.audio.spectrogram import (
    FramedSignal,
    LevelNormalizer,
    LogFilterbank,
    OnlineSpectrogram,
    SpectrogramProcessor,
    spectrogram,
)


def tone(freq: float, seconds: float, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * C.SAMPLE_RATE)) / C.SAMPLE_RATE
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_filterbank_has_92_bands_each_summing_to_one():
    fb = LogFilterbank()
    assert fb.n_bands == C.N_BINS == 92
    np.testing.assert_allclose(fb.matrix.sum(axis=0), 1.0, rtol=1e-5)
    assert fb.matrix.shape == (1024, 92)


def test_frame_count_and_centres_follow_madmom():
    fr = FramedSignal()
    assert fr.num_frames(22050) == 20
    assert fr.num_frames(22051) == 21
    assert [fr.centre(i) for i in range(4)] == [0, 1102, 2205, 3307]
    x = np.arange(5000, dtype=np.float32)
    frames = fr.process(x)
    # frame 1 is centred on sample 1102: its first sample is 1102 - 1024
    assert frames[1, 0] == 1102 - 1024 and frames[1, 1024] == 1102
    assert np.all(frames[0, :1024] == 0)  # zero padded on the left


def test_a440_peaks_in_the_right_band():
    fb = LogFilterbank()
    spec = SpectrogramProcessor().filtered(tone(440.0, 1.0))
    band = int(np.argmax(spec[10]))
    # the band whose filter has the most weight at 440 Hz
    bin440 = int(round(440 * C.FRAME_SIZE / C.SAMPLE_RATE))
    assert band == int(np.argmax(fb.matrix[bin440]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_online_equals_offline_for_any_chunking(seed):
    rng = np.random.default_rng(seed)
    x = np.concatenate([tone(220, 1.3), rng.standard_normal(30000).astype(np.float32) * 0.05, tone(660, 0.7)])
    offline = spectrogram(x)
    online = OnlineSpectrogram()
    parts, i = [], 0
    while i < len(x):
        n = int(rng.integers(1, 6000 if i < len(x) // 2 else 70000))  # small chunks, then up to 3 s at once
        parts.append(online.push(x[i : i + n]))
        i += n
    parts.append(online.flush())
    got = np.concatenate(parts)
    assert got.shape == offline.shape == (FramedSignal().num_frames(len(x)), 92)
    # the same bits, whatever the chunking (a service streams chunks of any size; `scoreid identify`
    # and the services must give the same answer)
    np.testing.assert_array_equal(got, offline)


def test_online_emits_frames_as_soon_as_they_are_complete():
    online = OnlineSpectrogram()
    # frame i needs samples up to int(i * 1102.5) + 1024 (exclusive)
    assert len(online.push(np.zeros(1023, np.float32))) == 0
    assert len(online.push(np.zeros(1, np.float32))) == 1
    assert len(online.push(np.zeros(1102, np.float32))) == 1
    assert online.n_frames == 2


@pytest.mark.parametrize("gain_db", [-30, -15, 6])
def test_level_normalisation_makes_features_gain_invariant(gain_db):
    rng = np.random.default_rng(3)
    x = np.concatenate([tone(330, 2.0, 0.2), tone(523, 2.0, 0.1)]) + 0.01 * rng.standard_normal(88200).astype(
        np.float32
    )
    g = 10 ** (gain_db / 20)
    np.testing.assert_allclose(spectrogram(x * g), spectrogram(x), atol=1e-4)


def test_silence_is_not_amplified():
    # below the floor the gain is capped at ref / floor: -100 dBFS noise is not brought up to level
    quiet = np.random.default_rng(0).standard_normal(22050).astype(np.float32) * 1e-5
    filtered = SpectrogramProcessor().filtered(quiet)
    assert filtered.mean(axis=1).max() < C.LEVEL_FLOOR
    np.testing.assert_allclose(
        spectrogram(quiet), np.log10(1 + filtered * C.LEVEL_REF / C.LEVEL_FLOOR), rtol=1e-5
    )


def test_level_normalizer_state_carries_across_calls():
    rng = np.random.default_rng(4)
    frames = np.abs(rng.standard_normal((100, 92))).astype(np.float32)
    whole = LevelNormalizer().process(frames)
    ln = LevelNormalizer()
    parts = np.concatenate([ln.process(frames[:7]), ln.process(frames[7:8]), ln.process(frames[8:])])
    np.testing.assert_allclose(parts, whole, rtol=1e-6)
