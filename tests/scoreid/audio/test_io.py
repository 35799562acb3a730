"""Audio loading: any rate / channel count to 22 050 Hz mono; clear errors for bad files."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from scoreid import contract as C
from scoreid.audio.io import AudioError, StreamResampler, load_audio


def test_stereo_44k1_becomes_mono_22k05(tmp_path):
    t = np.arange(44100) / 44100
    x = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 440 * t)], axis=1) * 0.5
    p = tmp_path / "a.flac"
    sf.write(p, x, 44100)
    y = load_audio(p)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - C.SAMPLE_RATE) <= 2
    spec = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spec) * C.SAMPLE_RATE / len(y) - 440) < 2


@pytest.mark.parametrize(
    "content,match",
    [(b"", "not a readable audio file"), (b"hello, not audio" * 10, "not a readable audio file")],
)
def test_unreadable_files_raise_audio_error_naming_the_file(tmp_path, content, match):
    p = tmp_path / "bad.wav"
    p.write_bytes(content)
    with pytest.raises(AudioError, match=match) as e:
        load_audio(p)
    assert "bad.wav" in str(e.value)


def test_missing_and_truncated_files(tmp_path):
    with pytest.raises(AudioError, match="no such file"):
        load_audio(tmp_path / "nope.wav")
    p = tmp_path / "t.wav"
    sf.write(p, np.zeros(100, np.float32), 22050)
    p.write_bytes(p.read_bytes()[:30])  # header cut off
    with pytest.raises(AudioError):
        load_audio(p)


def test_stream_resampler_matches_length():
    rs = StreamResampler(48000)
    x = np.random.default_rng(0).standard_normal(48000).astype(np.float32)
    out = np.concatenate([rs.push(x[i : i + 4000], last=i + 4000 >= len(x)) for i in range(0, len(x), 4000)])
    assert abs(len(out) - C.SAMPLE_RATE) <= 2
    with pytest.raises(AudioError):
        StreamResampler(0)
