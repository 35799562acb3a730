"""Processor chains, in the shape of madmom's ``SequentialProcessor``.

A *processor* is any object with ``process(x) -> y``. A processor that remembers what it has seen
(a streaming step: framing, resampling, the causal level normaliser) also has ``reset()``, which
starts it over; one that holds data back until more arrives also has ``flush()``, which returns
what it still holds at the end of the stream (zero padded, or the resampler's filter tail).

:class:`SequentialProcessor` applies a list of processors in order and is itself a processor, so
chains nest: the front end of :mod:`scoreid.audio.spectrogram` is one chain, and the encoder
service's audio path is ``[StreamResampler, OnlineSpectrogram]``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Processor(Protocol):
    """One step: data in, data out."""

    def process(self, x: Any) -> Any: ...


class SequentialProcessor:
    """Processors applied one after the other: ``process(x) = pn(...p2(p1(x)))``.

    ``reset()`` resets every step that has state. ``flush()`` ends a stream: each step that holds
    data back is flushed in order, and what it releases runs through the steps after it, so a chain
    flushes like its steps flushed by hand (``flush`` of a later step comes after the earlier
    steps' released data reached it). With no step holding data back, ``flush`` returns an empty
    float32 array.

    ``process`` and ``flush`` take an optional ``times`` list (one float per step, seconds): each
    step's own time is added to its entry, for latency stamps per step.
    """

    def __init__(self, processors: Iterable[Processor]):
        self.processors: list[Processor] = list(processors)
        for p in self.processors:
            if not isinstance(p, Processor):
                raise TypeError(f"{p!r} is not a processor (it has no process method)")

    def __len__(self) -> int:
        return len(self.processors)

    def __iter__(self) -> Iterator[Processor]:
        return iter(self.processors)

    def __getitem__(self, i: int) -> Processor:
        return self.processors[i]

    def before(self, kind: type) -> SequentialProcessor:
        """The chain of the steps before the first step of type ``kind`` (the same step objects)."""
        for i, p in enumerate(self.processors):
            if isinstance(p, kind):
                return SequentialProcessor(self.processors[:i])
        raise ValueError(f"no {kind.__name__} step in this chain")

    def reset(self) -> None:
        for p in self.processors:
            reset = getattr(p, "reset", None)
            if reset is not None:
                reset()

    def process(self, x: Any, times: list[float] | None = None) -> Any:
        return self._run(x, 0, times)

    def flush(self, times: list[float] | None = None) -> Any:
        parts = []
        for i, p in enumerate(self.processors):
            flush = getattr(p, "flush", None)
            if flush is None:
                continue
            t0 = time.perf_counter()
            held = flush()
            if times is not None:
                times[i] += time.perf_counter() - t0
            parts.append(self._run(held, i + 1, times))
        if not parts:
            return np.zeros(0, np.float32)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _run(self, x: Any, start: int, times: list[float] | None) -> Any:
        for i in range(start, len(self.processors)):
            t0 = time.perf_counter()
            x = self.processors[i].process(x)
            if times is not None:
                times[i] += time.perf_counter() - t0
        return x
