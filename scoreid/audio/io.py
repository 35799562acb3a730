"""Reading audio into the contract's format (22 050 Hz mono float32), offline and as a stream.

``load_audio`` reads any file libsndfile reads (WAV, FLAC, OGG, MP3 with libsndfile >= 1.1),
mixes to mono and resamples with soxr. ``StreamResampler`` does the same for a stream of chunks
at any input rate, keeping the filter state between chunks. Errors that a user can cause
(missing, unreadable, empty or truncated files) raise :class:`AudioError` with a one-line message
that names the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from scoreid import contract as C


class AudioError(ValueError):
    """An audio input that cannot be used; the message names the file and the reason."""


def to_mono(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x.mean(axis=1) if x.ndim == 2 else x


def resample(x: np.ndarray, sr_in: int, sr_out: int = C.SAMPLE_RATE) -> np.ndarray:
    if sr_in <= 0:
        raise AudioError(f"sample rate must be positive, got {sr_in}")
    if sr_in == sr_out:
        return np.asarray(x, np.float32)
    return soxr.resample(np.asarray(x, np.float32), sr_in, sr_out, quality="HQ").astype(np.float32)


def load_audio(path: str | Path, sr: int = C.SAMPLE_RATE) -> np.ndarray:
    """Read an audio file as mono float32 at ``sr`` Hz."""
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    try:
        data, file_sr = sf.read(str(path), dtype="float32", always_2d=False)
    except Exception as e:  # libsndfile reports format errors as RuntimeError / LibsndfileError
        raise AudioError(f"{path}: not a readable audio file ({str(e).strip().splitlines()[0]})") from None
    x = to_mono(data)
    if x.size == 0:
        raise AudioError(f"{path}: contains no audio samples")
    if not np.all(np.isfinite(x)):
        raise AudioError(f"{path}: contains NaN or infinite samples")
    return resample(x, int(file_sr), sr)


class StreamResampler:
    """Chunk-wise resampling to the contract rate with state kept between chunks."""

    def __init__(self, sr_in: int, sr_out: int = C.SAMPLE_RATE):
        if sr_in <= 0:
            raise AudioError(f"sample rate must be positive, got {sr_in}")
        self.sr_in, self.sr_out = sr_in, sr_out
        self._rs = (
            None if sr_in == sr_out else soxr.ResampleStream(sr_in, sr_out, 1, dtype="float32", quality="HQ")
        )

    def push(self, chunk: np.ndarray, last: bool = False) -> np.ndarray:
        chunk = np.asarray(chunk, np.float32).reshape(-1)
        if self._rs is None:
            return chunk
        return self._rs.resample_chunk(chunk, last=last)
