"""Reading audio into the contract's format (22 050 Hz mono float32), offline and as a stream.

``load_audio`` reads any file libsndfile reads (WAV, FLAC, OGG, MP3 with libsndfile >= 1.1),
mixes to mono and resamples with soxr. Resampling is a processor (:class:`Resampler`) with an
offline mode (a whole signal) and a streaming mode (:class:`StreamResampler`: chunks at any input
rate, the filter state kept between chunks), so that an input path runs it as the first step of a
:class:`~scoreid.audio.processor.SequentialProcessor` in front of the front end. Errors that a user
can cause (missing, unreadable, empty or truncated files) raise :class:`AudioError` with a one-line
message that names the file. :func:`check_float32_samples` is the bound every stream (the encoder
service, the web page) puts on the float32 samples it is sent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from scoreid import contract as C


class AudioError(ValueError):
    """An audio input that cannot be used; the message names the file and the reason."""


#: float32 samples beyond this magnitude are refused on a stream (nominal full scale is +-1; +-64
#: leaves 36 dB of headroom for uncalibrated input, and keeps every later stage finite: 3e38
#: overflowed the spectrogram)
MAX_SAMPLE = 64.0


def check_float32_samples(x: np.ndarray) -> None:
    """A streamed float32 chunk's samples: ValueError (a message for the sender) for NaN, infinite
    or out-of-range (beyond +-:data:`MAX_SAMPLE`) samples."""
    if not np.all(np.isfinite(x)):
        raise ValueError("audio chunk contains NaN or infinite samples")
    peak = float(np.max(np.abs(x))) if len(x) else 0.0
    if peak > MAX_SAMPLE:
        raise ValueError(f"audio samples must be within +-{MAX_SAMPLE:g} (full scale is +-1), got {peak:.3g}")


def to_mono(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x.mean(axis=1) if x.ndim == 2 else x


def check_rate(sr: int) -> int:
    """``sr``, or :class:`AudioError` when it is not a positive sample rate."""
    if sr <= 0:
        raise AudioError(f"sample rate must be positive, got {sr}")
    return sr


def resample(x: np.ndarray, sr_in: int, sr_out: int = C.SAMPLE_RATE) -> np.ndarray:
    check_rate(sr_in)
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
    return Resampler(int(file_sr), sr).process(x)


class Resampler:
    """Resampling to the contract rate (soxr, HQ), a step of the audio input chain.

    Where resampling belongs: it is the first step of an *input path* (a file, a client stream),
    in front of the front-end chain of :mod:`scoreid.audio.spectrogram`, not a step inside that
    chain. The input rate is a property of the source (the file's header, the session's options)
    and is known only where the audio comes in, while the front end is defined at the contract
    rate and also runs on audio that is already there (synthesised performances in the corpus
    builder and the trainer); a step that does nothing at 22 050 Hz would only hide that.

    ``process(x)`` resamples a whole signal (:func:`resample`); :meth:`stream` gives the streaming
    mode, a :class:`StreamResampler` for chunks of one stream.
    """

    def __init__(self, sr_in: int, sr_out: int = C.SAMPLE_RATE):
        self.sr_in, self.sr_out = check_rate(sr_in), sr_out

    def process(self, x: np.ndarray) -> np.ndarray:
        return resample(x, self.sr_in, self.sr_out)

    def stream(self) -> StreamResampler:
        """The streaming mode of this resampling (a new stream)."""
        return StreamResampler(self.sr_in, self.sr_out)


class StreamResampler:
    """Chunk-wise resampling to the contract rate with state kept between chunks.

    A streaming processor: ``process(chunk)`` returns the output samples ready so far,
    ``flush()`` the filter's tail at the end of the stream, ``reset()`` starts a new stream.
    ``push(chunk, last)`` is the same with soxr's end-of-stream flag.
    """

    def __init__(self, sr_in: int, sr_out: int = C.SAMPLE_RATE):
        self.sr_in, self.sr_out = check_rate(sr_in), sr_out
        self.reset()

    def reset(self) -> None:
        self._rs = (
            None
            if self.sr_in == self.sr_out
            else soxr.ResampleStream(self.sr_in, self.sr_out, 1, dtype="float32", quality="HQ")
        )

    def push(self, chunk: np.ndarray, last: bool = False) -> np.ndarray:
        chunk = np.asarray(chunk, np.float32).reshape(-1)
        if self._rs is None:
            return chunk
        return self._rs.resample_chunk(chunk, last=last)

    def process(self, chunk: np.ndarray) -> np.ndarray:
        return self.push(chunk)

    def flush(self) -> np.ndarray:
        return self.push(np.zeros(0, np.float32), last=True)
