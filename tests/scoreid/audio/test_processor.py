"""Processor chains: composition order, reset, flush order, per-step times; the front end is one
chain whose online mode equals its offline mode for any chunking, also behind the resampler."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scoreid import contract as C
from scoreid.audio.io import AudioError, Resampler, StreamResampler, resample
from scoreid.audio.processor import SequentialProcessor
from scoreid.audio.spectrogram import (
    STFT,
    FramedSignal,
    LevelNormalizer,
    LogCompression,
    LogFilterbank,
    OnlineSpectrogram,
    SpectrogramProcessor,
    StreamFramer,
    front_end_steps,
    spectrogram,
)


class Add:
    def __init__(self, k: float):
        self.k = k

    def process(self, x):
        return x + self.k


class Mul:
    def __init__(self, k: float):
        self.k = k

    def process(self, x):
        return x * self.k


class RunningSum:
    """Stateful: the running sum of everything seen since the last reset."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.total = 0.0

    def process(self, x):
        out = self.total + np.cumsum(x)
        self.total = float(out[-1]) if len(out) else self.total
        return out


class HoldBack:
    """Buffers: passes on all but the last ``n`` values seen; ``flush`` releases them."""

    def __init__(self, n: int, tag: float = 0.0):
        self.n, self.tag = n, tag
        self.reset()

    def reset(self):
        self.held = np.zeros(0)

    def process(self, x):
        both = np.concatenate([self.held, np.asarray(x, float)])
        cut = max(0, len(both) - self.n)
        self.held = both[cut:]
        return both[:cut] + self.tag

    def flush(self):
        out, self.held = self.held, np.zeros(0)
        return out + self.tag


def chunks(x: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    """``x`` cut at the given sizes (cycled), every sample exactly once, empty chunks allowed."""
    out, i, k = [], 0, 0
    while i < len(x):
        n = sizes[k % len(sizes)]
        out.append(x[i : i + n])
        i += n
        k += 1
    return out


def test_steps_run_in_the_declared_order_and_chains_nest():
    assert SequentialProcessor([Add(1), Mul(2)]).process(3.0) == 8.0
    assert SequentialProcessor([Mul(2), Add(1)]).process(3.0) == 7.0
    inner = SequentialProcessor([Mul(10), Add(-1)])
    assert SequentialProcessor([Add(1), inner, Mul(3)]).process(2.0) == ((2 + 1) * 10 - 1) * 3
    assert len(inner) == 2 and isinstance(inner[0], Mul) and [type(p) for p in inner] == [Mul, Add]
    with pytest.raises(TypeError, match="not a processor"):
        SequentialProcessor([Add(1), 42])


def test_before_is_the_prefix_sharing_the_steps():
    a, b, c = Add(1), Mul(2), RunningSum()
    chain = SequentialProcessor([a, b, c])
    head = chain.before(RunningSum)
    assert head.processors == [a, b] and head[0] is a
    assert head.process(1.0) == 4.0
    with pytest.raises(ValueError, match="HoldBack"):
        chain.before(HoldBack)


def test_reset_resets_every_stateful_step_and_skips_the_stateless():
    chain = SequentialProcessor([Mul(2), RunningSum(), SequentialProcessor([RunningSum()])])
    x = np.arange(5, dtype=float)
    first = chain.process(x)
    assert not np.array_equal(chain.process(x), first)  # the state carried on
    chain.reset()
    np.testing.assert_array_equal(chain.process(x), first)


def test_flush_releases_each_steps_tail_through_the_later_steps_in_order():
    # the first step's tail must pass through the second step before the second step's own flush
    chain = SequentialProcessor([HoldBack(3, tag=0.0), HoldBack(2, tag=100.0), Add(1000)])
    x = np.arange(10, dtype=float)
    out = [chain.process(c) for c in chunks(x, [4, 0, 1, 5])]
    out.append(chain.flush())
    np.testing.assert_array_equal(np.concatenate(out), x + 100 + 1000)
    # a chain with nothing held back flushes nothing
    flushed = SequentialProcessor([Add(1)]).flush()
    assert flushed.dtype == np.float32 and flushed.shape == (0,)


def test_times_are_added_per_step():
    class Slow:
        def process(self, x):
            time.sleep(0.02)
            return x

    times = [0.0, 0.0]
    chain = SequentialProcessor([Add(1), Slow()])
    chain.process(1.0, times)
    chain.process(1.0, times)
    assert times[1] >= 0.04 > times[0] >= 0.0
    held = [0.0, 0.0]
    SequentialProcessor([HoldBack(1), Slow()]).flush(held)
    assert held[1] >= 0.02


def test_the_front_end_is_one_declaration_in_both_modes():
    offline = [type(p) for p in front_end_steps()]
    online = [type(p) for p in front_end_steps(online=True)]
    assert offline == [FramedSignal, STFT, LogFilterbank, LevelNormalizer, LogCompression]
    assert online == [StreamFramer, *offline[1:]]
    assert [type(p) for p in SpectrogramProcessor()] == offline
    assert [type(p) for p in OnlineSpectrogram()] == online
    a, b = front_end_steps(), front_end_steps()
    assert all(p is not q for p, q in zip(a, b))  # fresh steps: no state shared between chains


def signal(seed: int, seconds: float = 1.5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * C.SAMPLE_RATE)
    t = np.arange(n) / C.SAMPLE_RATE
    tone = 0.3 * np.sin(2 * np.pi * 330 * t) * (t > 0.4)
    return (tone + 0.02 * rng.standard_normal(n)).astype(np.float32)


SIZES = st.lists(st.integers(0, 7000), min_size=1, max_size=8).filter(any)


@settings(max_examples=25, deadline=None)
@given(sizes=SIZES, seed=st.integers(0, 3))
def test_stream_framing_equals_whole_signal_framing_exactly(sizes, seed):
    x = signal(seed, 0.6)
    framer = FramedSignal().stream()
    got = np.concatenate([framer.process(c) for c in chunks(x, sizes)] + [framer.flush()])
    np.testing.assert_array_equal(got, FramedSignal().process(x))
    assert framer.n_frames == len(got) and framer.n_samples == len(x)


@settings(max_examples=25, deadline=None)
@given(sizes=SIZES, seed=st.integers(0, 3))
def test_online_chain_equals_offline_chain_for_any_chunking(sizes, seed):
    x = signal(seed)
    offline = SpectrogramProcessor().process(x)
    online = OnlineSpectrogram()
    online.push(signal(seed + 10, 0.3))  # a stream before: reset must forget it
    online.reset()
    got = np.concatenate([online.process(c) for c in chunks(x, sizes)] + [online.flush()])
    assert got.shape == offline.shape == (FramedSignal().num_frames(len(x)), C.N_BINS)
    np.testing.assert_allclose(got, offline, atol=1e-5)
    assert online.n_frames == len(got) and online.seconds == len(x) / C.SAMPLE_RATE


def test_an_offline_processor_starts_afresh_on_every_signal():
    x = signal(0)
    proc = SpectrogramProcessor()
    first = proc.process(x)
    proc.process(10 * signal(1))  # another signal leaves the level normaliser elsewhere
    np.testing.assert_array_equal(proc.process(x), first)
    np.testing.assert_array_equal(spectrogram(x), first)


@pytest.mark.parametrize("sr", [16000, 44100])
def test_resampling_is_the_input_chains_first_step_in_both_modes(sr):
    rng = np.random.default_rng(sr)
    x = resample(signal(2), C.SAMPLE_RATE, sr)
    offline = SequentialProcessor([Resampler(sr), SpectrogramProcessor()]).process(x)
    chain = SequentialProcessor([Resampler(sr).stream(), OnlineSpectrogram()])
    sizes = [int(n) for n in rng.integers(0, 5000, 20)]
    parts = [chain.process(c) for c in chunks(x, sizes)]
    got = np.concatenate([*parts, chain.flush()])
    assert abs(len(got) - len(offline)) <= 1
    n = min(len(got), len(offline))
    np.testing.assert_allclose(got[:n], offline[:n], atol=1e-4)
    # the chain is exactly the steps wired by hand
    rs, spec = StreamResampler(sr), OnlineSpectrogram()
    by_hand = [spec.push(rs.push(c)) for c in chunks(x, sizes)]
    by_hand += [spec.push(rs.push(np.zeros(0, np.float32), last=True)), spec.flush()]
    np.testing.assert_array_equal(got, np.concatenate(by_hand))


def test_stream_resampler_reset_starts_a_new_stream():
    x = signal(3, 0.5)
    rs = StreamResampler(44100)
    first = np.concatenate([rs.process(x[:3000]), rs.process(x[3000:]), rs.flush()])
    rs.reset()
    again = np.concatenate([rs.process(x[:3000]), rs.process(x[3000:]), rs.flush()])
    np.testing.assert_array_equal(again, first)
    np.testing.assert_array_equal(Resampler(22050).stream().process(x), x)  # at the contract rate: as is
    with pytest.raises(AudioError, match="positive"):
        Resampler(0)
