"""The audio front end: waveform (22 050 Hz mono) -> log-frequency spectrogram, 20 fps, 92 bins.

Built as small composable processors in the style of madmom (one class per step), chained by a
:class:`~scoreid.audio.processor.SequentialProcessor`. The steps are declared once, in
:func:`front_end_steps`:

    FramedSignal -> STFT (magnitude) -> LogFilterbank -> LevelNormalizer -> LogCompression

:class:`SpectrogramProcessor` is that chain for a whole signal; :class:`OnlineSpectrogram` is the
same chain for a stream, with the framing in its streaming mode (:class:`StreamFramer`), emitting
only the frames that became complete since the last call. Both give the same frames for the same
samples, to float32 rounding (tested), so the corpus builder, the trainer, the offline
``scoreid identify`` and the streaming encoder service all see the same features.

The chain starts at the contract's 22 050 Hz mono waveform; resampling is the step in front of it
on the input paths that take other rates (:mod:`scoreid.audio.io`).

Front-end facts (see ``scoreid.contract`` and REFERENCE.md): frame i is centred on sample
``int(i * 1102.5)``, zero padded at the edges, ``ceil(n / 1102.5)`` frames for n samples;
symmetric Hann window of 2048; the first 1024 FFT bins (no Nyquist); triangular filters on
log-spaced centres referenced to 440 Hz, 16 per octave, 30-6000 Hz, each normalised to sum 1,
duplicate centre bins merged. Then (our addition, see ``contract.LEVEL_*``) a causal level
normaliser, then ``log10(1 + x)``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.signal import lfilter

from scoreid import contract as C
from scoreid.audio.processor import Processor, SequentialProcessor


# ------------------------------------------------------------------------------- framing
class FramedSignal:
    """Cut a signal into overlapping frames centred on ``int(i * hop)``, zero padded."""

    def __init__(self, frame_size: int = C.FRAME_SIZE, fps: int = C.FPS, sample_rate: int = C.SAMPLE_RATE):
        self.frame_size = frame_size
        self.hop = sample_rate / fps

    def num_frames(self, n_samples: int) -> int:
        return int(math.ceil(n_samples / self.hop))

    def centre(self, i: int) -> int:
        return int(i * self.hop)

    def process(self, signal: np.ndarray) -> np.ndarray:
        signal = np.asarray(signal, dtype=np.float32)
        if signal.ndim != 1:
            raise ValueError(f"expected a mono 1-d signal, got shape {signal.shape}")
        n = self.num_frames(len(signal))
        half = self.frame_size // 2
        padded = np.concatenate([np.zeros(half, np.float32), signal, np.zeros(self.frame_size, np.float32)])
        centres = (np.arange(n) * self.hop).astype(np.int64)
        idx = centres[:, None] + np.arange(self.frame_size)[None, :]  # start = centre - half (+half pad)
        return padded[idx]

    def stream(self) -> StreamFramer:
        """The streaming mode of this framing (a new stream)."""
        return StreamFramer(self)


class StreamFramer:
    """The streaming mode of :class:`FramedSignal`: samples in, the frames they completed out.

    ``process(samples)`` returns the frames (zero padded on the left like the offline framing)
    that became complete with these samples; ``flush()`` returns the rest, zero padded at the end,
    so all the frames of a stream equal ``FramedSignal.process`` of the whole signal. Memory is one
    frame of samples. ``reset()`` starts a new stream.
    """

    def __init__(self, framer: FramedSignal | None = None):
        self.framer = framer or FramedSignal()
        self.half = self.framer.frame_size // 2
        self.reset()

    def reset(self) -> None:
        # buffer holds samples [buf_start, buf_start + len(buf)) of the zero-left-padded stream,
        # in stream coordinates where sample 0 of the signal is at position `half`.
        self.buf = np.zeros(self.half, np.float32)
        self.buf_start = 0
        self.n_samples = 0  # signal samples received
        self.n_frames = 0  # frames emitted

    def process(self, samples: np.ndarray) -> np.ndarray:
        samples = np.asarray(samples, np.float32).reshape(-1)
        self.buf = np.concatenate([self.buf, samples])
        self.n_samples += len(samples)
        # frame i is complete once the stream holds position centre_i + frame_size (exclusive)
        avail = self.buf_start + len(self.buf)  # stream positions available
        fs, hop = self.framer.frame_size, self.framer.hop
        last = int((avail - fs) // hop) + 1  # may overshoot by one: int(i * hop) <= i * hop
        while last >= 0 and int(last * hop) + fs > avail:
            last -= 1
        upto = last + 1
        upto = min(upto, self.framer.num_frames(self.n_samples))
        return self._frames(upto)

    def flush(self) -> np.ndarray:
        """The remaining frames, zero padded at the end (as the offline framing)."""
        total = self.framer.num_frames(self.n_samples)
        self.buf = np.concatenate([self.buf, np.zeros(self.framer.frame_size, np.float32)])
        return self._frames(total)

    def _frames(self, upto_frame: int) -> np.ndarray:
        fs = self.framer.frame_size
        if upto_frame <= self.n_frames:
            return np.zeros((0, fs), np.float32)
        centres = (np.arange(self.n_frames, upto_frame) * self.framer.hop).astype(np.int64)
        idx = centres[:, None] - self.buf_start + np.arange(fs)[None, :]
        frames = self.buf[idx]
        self.n_frames = upto_frame
        drop = int(self.n_frames * self.framer.hop) - self.buf_start  # first sample still needed
        if drop > 0:
            self.buf = self.buf[drop:]
            self.buf_start += drop
        return frames


# ---------------------------------------------------------------------------------- STFT
class STFT:
    """Magnitude spectrum of windowed frames: symmetric Hann, first ``frame_size // 2`` bins."""

    def __init__(self, frame_size: int = C.FRAME_SIZE):
        self.frame_size = frame_size
        self.window = np.hanning(frame_size).astype(np.float32)

    def process(self, frames: np.ndarray) -> np.ndarray:
        spec = np.fft.rfft(frames * self.window, n=self.frame_size, axis=-1)
        return np.abs(spec[..., : self.frame_size // 2]).astype(np.float32)


# ------------------------------------------------------------------------------ filterbank
def log_frequencies(bands_per_octave: int, fmin: float, fmax: float, fref: float = C.FREF) -> np.ndarray:
    """Log-spaced frequencies referenced to ``fref``, limited to [fmin, fmax] (madmom's rule)."""
    left = np.floor(np.log2(fmin / fref) * bands_per_octave)
    right = np.ceil(np.log2(fmax / fref) * bands_per_octave)
    freqs = fref * 2.0 ** (np.arange(left, right) / bands_per_octave)
    freqs = freqs[np.searchsorted(freqs, fmin) :]
    return freqs[: np.searchsorted(freqs, fmax, "right")]


def frequencies_to_bins(freqs: np.ndarray, bin_freqs: np.ndarray) -> np.ndarray:
    """Nearest FFT bin of each frequency, duplicates merged."""
    idx = np.clip(bin_freqs.searchsorted(freqs), 1, len(bin_freqs) - 1)
    left, right = bin_freqs[idx - 1], bin_freqs[idx]
    idx = idx - (freqs - left < right - freqs)
    return np.unique(idx)


def triangular_filterbank(bins: np.ndarray, n_fft_bins: int) -> np.ndarray:
    """(n_fft_bins, len(bins) - 2) matrix of overlapping triangular filters, each summing to 1."""
    if len(bins) < 3:
        raise ValueError("need at least 3 bins for a triangular filterbank")
    fb = np.zeros((n_fft_bins, len(bins) - 2), np.float32)
    for k in range(len(bins) - 2):
        start, centre, stop = (int(b) for b in bins[k : k + 3])
        if stop - start < 2:
            centre, stop = start, start + 1
        rel_c, rel_s = centre - start, stop - start
        data = np.zeros(rel_s, np.float64)
        if rel_c > 0:
            data[:rel_c] = np.linspace(0, 1, rel_c, endpoint=False)
        data[rel_c:] = np.linspace(1, 0, rel_s - rel_c, endpoint=False)
        data /= data.sum()
        fb[start:stop, k] = data
    return fb


class LogFilterbank:
    """Log-frequency triangular filterbank (92 bands for the contract's parameters)."""

    def __init__(
        self,
        frame_size: int = C.FRAME_SIZE,
        sample_rate: int = C.SAMPLE_RATE,
        bands_per_octave: int = C.BANDS_PER_OCTAVE,
        fmin: float = C.FMIN,
        fmax: float = C.FMAX,
        fref: float = C.FREF,
    ):
        n_fft_bins = frame_size // 2
        bin_freqs = np.fft.fftfreq(frame_size, 1.0 / sample_rate)[:n_fft_bins]
        freqs = log_frequencies(bands_per_octave, fmin, fmax, fref)
        self.matrix = triangular_filterbank(frequencies_to_bins(freqs, bin_freqs), n_fft_bins)
        # the bands' few non-zero weights (978 of 1024 x 92), band by band: each band's sum runs over
        # its own bins only (a fraction of the dense product's time on a stream's 10 frames a hop)
        bands = np.asarray(self.matrix, np.float64).T
        counts = np.count_nonzero(bands, axis=1)
        if not counts.all():
            raise ValueError("a filterbank band without a bin: more bands than the FFT resolves")
        rows, self._bins = np.nonzero(bands)  # row-major: band by band, each band's bins ascending
        self._weights = bands[rows, self._bins]
        self._starts = np.cumsum(counts) - counts

    @property
    def n_bands(self) -> int:
        return self.matrix.shape[1]

    def process(self, mag: np.ndarray) -> np.ndarray:
        # in float64, then rounded: a float32 BLAS product's last bits depend on how many frames are
        # multiplied at once (kernels split batches differently), which would make the streamed
        # frames depend on the chunking; each band's sum over its bins, in float64 in the same order
        # for every frame, rounded to float32, does not
        terms = np.asarray(mag, np.float64)[:, self._bins] * self._weights
        return np.add.reduceat(terms, self._starts, axis=1).astype(np.float32)


# ------------------------------------------------------------------------- level normaliser
class LevelNormalizer:
    """Causal automatic gain: divide each frame by an EMA of the mean band magnitude.

    Stateful: ``process`` continues from the state left by the previous call, so feeding a
    signal in pieces gives the same frames as feeding it whole. ``reset`` starts over.
    """

    def __init__(
        self,
        tau_s: float = C.LEVEL_TAU_S,
        fps: int = C.FPS,
        floor: float = C.LEVEL_FLOOR,
        ref: float = C.LEVEL_REF,
    ):
        self.alpha = 1.0 / (tau_s * fps)
        self.floor = floor
        self.ref = ref
        self.reset()

    def reset(self) -> None:
        self.state: float | None = None  # EMA of the level; None until a frame exceeds the floor

    def process(self, frames: np.ndarray) -> np.ndarray:
        frames = np.asarray(frames, np.float32)
        if len(frames) == 0:
            return frames
        levels = frames.mean(axis=1).astype(np.float64)
        ema = np.full(len(levels), np.nan)
        start = 0
        if self.state is None:
            above = np.flatnonzero(levels > self.floor)
            start = int(above[0]) if len(above) else len(levels)
            if start < len(levels):
                self.state = float(levels[start])
        if self.state is not None and start < len(levels):
            a = self.alpha
            ema[start:], _ = lfilter([a], [1.0, -(1.0 - a)], levels[start:], zi=[(1.0 - a) * self.state])
            self.state = float(ema[-1])
        denom = np.where(np.isnan(ema), self.floor, np.maximum(ema, self.floor))
        return (frames * (self.ref / denom)[:, None]).astype(np.float32)


class LogCompression:
    """``log10(1 + x)``."""

    def process(self, x: np.ndarray) -> np.ndarray:
        return np.log10(1.0 + x).astype(np.float32)


# --------------------------------------------------------------------------- the chain
def front_end_steps(online: bool = False) -> list[Processor]:
    """The front end's steps, declared once for both modes (fresh objects on every call).

    ``online=False``: whole-signal framing (:class:`FramedSignal`); ``online=True``: the streaming
    framing (:class:`StreamFramer`), which emits the frames completed by each chunk. Every later
    step works frame by frame, the level normaliser carrying its state from chunk to chunk.
    """
    framer = FramedSignal()
    return [
        framer.stream() if online else framer,
        STFT(),
        LogFilterbank(),
        LevelNormalizer(),
        LogCompression(),
    ]


class SpectrogramProcessor(SequentialProcessor):
    """Whole-signal front end: 1-d float waveform at 22 050 Hz -> (frames, 92) float32.

    Each ``process`` call is one whole signal: the level normaliser starts afresh (the chain is
    reset first), so one instance serves many signals, one at a time.
    """

    def __init__(self) -> None:
        super().__init__(front_end_steps(online=False))

    def filtered(self, signal: np.ndarray) -> np.ndarray:
        """Linear filterbank magnitudes (before level normalisation and log)."""
        return self.before(LevelNormalizer).process(signal)

    def process(self, signal: np.ndarray, times: list[float] | None = None) -> np.ndarray:
        self.reset()
        return super().process(signal, times)


def spectrogram(signal: np.ndarray) -> np.ndarray:
    """Convenience: the contract spectrogram of a whole 22 050 Hz mono signal."""
    return SpectrogramProcessor().process(signal)


class OnlineSpectrogram(SequentialProcessor):
    """Streaming front end: ``push(samples)`` returns the frames completed by those samples.

    The same steps as :class:`SpectrogramProcessor`, with streaming framing. Only new frames are
    computed (nothing is recomputed as the stream grows); memory is one frame of samples.
    ``flush()`` zero-pads the end like the offline processor, so
    ``concat(push(a), push(b), ..., flush())`` equals ``SpectrogramProcessor().process(concat(a, b, ...))``.
    ``push`` is ``process`` (the chain's name), kept for the callers.
    """

    def __init__(self) -> None:
        super().__init__(front_end_steps(online=True))
        framer = self.processors[0]
        assert isinstance(framer, StreamFramer)
        self.framer = framer

    def push(self, samples: np.ndarray) -> np.ndarray:
        return self.process(samples)

    @property
    def n_samples(self) -> int:
        """Signal samples received."""
        return self.framer.n_samples

    @property
    def n_frames(self) -> int:
        """Frames emitted."""
        return self.framer.n_frames

    @property
    def seconds(self) -> float:
        return self.n_samples / C.SAMPLE_RATE
