"""The incremental audio encoder: each hop computes the audio CNN's first layers only for the new
frames (issue 32).

Every hop the encoder embeds a window of 84 frames of which the previous window already saw 74.
:mod:`scoreid.models.split` cuts the network so that the stem's activations (block 1 and block 2's
convolutions, time stride 2) of a stream position are the same in every window that holds it away
from its edges. :class:`IncrementalAudio` keeps those *columns* per stream in an
:class:`AudioState` and, for each window:

1. computes the valid stem only for the columns the stream has not computed yet (steady state at a
   0.5-s hop: 5 new columns from 22 frames; the stream's first window, or one after a gap: its 36
   interior columns from its 84 frames);
2. computes the window's three edge columns on each side (they see the window's zero padding) with
   the padded stem on its first and last 12 frames;
3. runs the head on the 42 assembled columns.

A window that starts on an odd frame (the last, partial hop of a stream), or any window when the
model has no incremental graphs, goes through the whole-window graph instead. The sequence of stem
calls depends only on the stream's windows, so one stream gives the same embeddings in
``scoreid identify`` (one window per call) and in the encoder service (windows of many sessions
batched): the graphs are batch-invariant (``tests/ops/test_parity.py``).

Cost on the default network: ~125 M multiply-adds per steady-state window instead of 180 M
(``python -m bench.incremental``); the state is at most 36 columns x 48 x 46 float32 (318 KB) per
stream, dropped with the stream.

An :class:`AudioState` belongs to one stream and is used by one call at a time (a session's windows
are encoded one after the other: the next waits for the previous one's answer).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

#: the head's input name
COLUMNS_INPUT = "columns"
#: manifest part -> (fp32 file, int8 file)
INCREMENTAL_FILES = {
    "stem": ("audio.stem.onnx", "audio.stem.int8.onnx"),
    "edge": ("audio.edge.onnx", "audio.edge.int8.onnx"),
    "head": ("audio.head.onnx", "audio.head.int8.onnx"),
}
# the cut's geometry (scoreid.models.split imports it: the runtime needs no torch)
EDGE_FRAMES = 12
EDGE_COLUMNS = 3
CONTEXT_LEFT, CONTEXT_RIGHT = 6, 7
STRIDE = 2

Runner = Callable[[np.ndarray], np.ndarray]


def manifest_key(part: str, int8: bool = False) -> str:
    """The manifest ``files`` key of one graph (``part`` in :data:`INCREMENTAL_FILES`)."""
    return f"audio_{part}_onnx" + ("_int8" if int8 else "")


def assemble_columns(left: np.ndarray, interior: np.ndarray, right: np.ndarray) -> np.ndarray:
    """(B, C, H, 42) head input of whole windows from the padded stem on their first / last 12
    frames and the valid stem's 36 interior columns (export checks and calibration)."""
    return np.ascontiguousarray(
        np.concatenate([left[..., :EDGE_COLUMNS], interior, right[..., -EDGE_COLUMNS:]], axis=-1)
    )


class AudioState:
    """One stream's stem columns: stream positions ``lo … lo + n - 1`` (column ``P`` reads frames
    ``2P - 6 … 2P + 7``), trimmed after each window to the ones the next can reuse."""

    def __init__(self) -> None:
        self.lo = 0
        self.cols: np.ndarray | None = None  # (C, H, n)

    @property
    def hi(self) -> int:
        return self.lo + (0 if self.cols is None else self.cols.shape[-1])

    @property
    def nbytes(self) -> int:
        return 0 if self.cols is None else int(self.cols.nbytes)


@dataclass
class _Plan:
    start: int  # the window's first stream frame
    first: int  # the window's first interior position
    last: int  # its last interior position (inclusive)
    new_from: int  # first position to compute (> last: none)
    reset: bool  # the state does not reach this window: start over at `first`


class IncrementalAudio:
    """Windows of streams -> embeddings, the stem computed once per stream position (module docstring)."""

    def __init__(self, stem: Runner, edge: Runner, head: Runner, whole: Runner, frames: int):
        if frames % STRIDE or frames < EDGE_FRAMES + 2:
            raise ValueError(f"an incremental encoder needs an even window of >= 14 frames, got {frames}")
        self.stem, self.edge, self.head, self.whole = stem, edge, head, whole
        self.frames = frames
        self.interior = frames // STRIDE - 2 * EDGE_COLUMNS  # 36 for 84 frames

    def embed(self, x: np.ndarray, ends: Sequence[int], states: Sequence[AudioState | None]) -> np.ndarray:
        """``x``: (B, 1, bins, F) network-layout windows; ``ends[i]``: the stream frame after window
        ``i``'s last; ``states[i]``: its stream's state (None: embed it whole). Windows of one stream
        must come in stream order. Returns (B, D) embeddings."""
        n = len(x)
        if not (len(ends) == len(states) == n):
            raise ValueError("one end frame and one state per window")
        inc = [i for i in range(n) if states[i] is not None and (int(ends[i]) - self.frames) % STRIDE == 0]
        rest = sorted(set(range(n)) - set(inc))
        out: list[np.ndarray | None] = [None] * n
        if rest:
            whole = np.asarray(self.whole(np.ascontiguousarray(x[rest])), np.float32)
            for j, i in enumerate(rest):
                out[i] = whole[j]
        if inc:
            emb = self._incremental(x, ends, states, inc)
            for j, i in enumerate(inc):
                out[i] = emb[j]
        return np.stack(out) if n else np.zeros((0, 0), np.float32)  # type: ignore[arg-type]

    def _plan(self, ends: Sequence[int], states: Sequence[AudioState | None], inc: list[int]) -> list[_Plan]:
        reach: dict[int, tuple[int, int]] = {}  # id(state) -> (lo, hi) once this batch's earlier windows ran
        plans = []
        for i in inc:
            st = states[i]
            assert st is not None
            start = int(ends[i]) - self.frames
            first = start // STRIDE + EDGE_COLUMNS
            last = first + self.interior - 1
            lo, hi = reach.get(id(st), (st.lo, st.hi))
            reset = not (lo <= first <= hi) or hi == lo
            new_from = first if reset else max(first, hi)
            plans.append(_Plan(start, first, last, new_from, reset))
            reach[id(st)] = (first, last + 1)  # what the state holds after this window
        return plans

    def _incremental(
        self, x: np.ndarray, ends: Sequence[int], states: Sequence[AudioState | None], inc: list[int]
    ) -> np.ndarray:
        plans = self._plan(ends, states, inc)
        # 1. the valid stem for the new positions, windows grouped by input length
        new: dict[int, np.ndarray] = {}
        groups: dict[int, list[int]] = {}
        for j, p in enumerate(plans):
            if p.new_from <= p.last:
                count = p.last - p.new_from + 1
                groups.setdefault(STRIDE * (count - 1) + CONTEXT_LEFT + CONTEXT_RIGHT + 1, []).append(j)
        for t, js in groups.items():
            batch = []
            for j in js:
                f0 = STRIDE * plans[j].new_from - CONTEXT_LEFT - plans[j].start
                batch.append(x[inc[j], ..., f0 : f0 + t])
            cols = np.asarray(self.stem(np.ascontiguousarray(np.stack(batch))), np.float32)
            for k, j in enumerate(js):
                new[j] = cols[k]
        # 2. the edges of every window in one call, written into the head's input
        xi = x[inc]
        edges = np.asarray(
            self.edge(np.ascontiguousarray(np.concatenate([xi[..., :EDGE_FRAMES], xi[..., -EDGE_FRAMES:]]))),
            np.float32,
        )
        m, e = len(inc), EDGE_COLUMNS
        cols = np.empty((m, *edges.shape[1:3], 2 * e + self.interior), np.float32)
        cols[..., :e] = edges[:m, ..., :e]
        cols[..., -e:] = edges[m:, ..., -e:]
        # 3. each stream's state updated in window order, the window's interior taken from it
        for j, (i, p) in enumerate(zip(inc, plans)):
            st = states[i]
            assert st is not None
            if p.reset or st.cols is None:
                st.cols = new[j].copy()  # a copy: the batch's output is not kept alive by one stream
            elif j in new:
                st.cols = np.concatenate([st.cols[..., p.first - st.lo :], new[j]], axis=-1)
            else:
                st.cols = st.cols[..., p.first - st.lo : p.first - st.lo + self.interior]
            st.lo = p.first  # the state now holds exactly this window's interior: what the next reuses
            cols[j, ..., e : e + self.interior] = st.cols
        return np.asarray(self.head(cols), np.float32)
