"""Training and evaluation samples drawn from a built corpus (:class:`trainer.corpus.store.Corpus`).

- :class:`PairSet`: every aligned notehead <-> onset pair of a set of pieces, restricted to the
  renders and performances of one condition ("same" or "shifted"). Each row is (strip id, x on the
  strip, spectrogram id, onset frame, piece number). Pairs of one (render, performance) that share
  an onset frame (chord notes) are kept once (``dedupe``), so a retrieval query has one right answer.
  ``sheet_batch`` / ``audio_batch`` cut the network inputs with :mod:`scoreid.sheet.strip`; the audio
  excerpt is centred ``audio_lead`` frames *before* the onset (0: on it), so a model trained on it
  matches the music that lies that much after its window's centre, nearer the window's end.
- :class:`SnippetSource`: unlabeled windows for self-supervised pre-training: sheet windows at
  uniform random x on the strips, audio context excerpts at uniform random frames of the
  spectrograms (alignment not needed, so the unlabeled pool can be used).

All sampling takes a ``numpy.random.Generator``; nothing here holds global random state.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scoreid import contract as C
from scoreid.errors import UserError
from scoreid.sheet.strip import window_at
from scoreid.tensors import audio_to_network, audio_window, sheet_to_network
from trainer.corpus.store import Corpus

CONDITIONS = ("same", "shifted")


def open_corpus(path: str | Path) -> Corpus:
    return Corpus(path)


def context_frames(frames: int, factor: float) -> int:
    """Width of the audio context excerpt cut around an anchor before augmentation."""
    return int(np.ceil(frames * factor / 2.0)) * 2


@dataclass
class PairSet:
    """Aligned pairs of a set of pieces under one condition (see module docstring)."""

    piece_ids: list[str]
    strips: list[np.ndarray] = field(default_factory=list)
    specs: list[np.ndarray] = field(default_factory=list)
    strip_piece: list[int] = field(default_factory=list)
    spec_piece: list[int] = field(default_factory=list)
    rows: np.ndarray = field(default_factory=lambda: np.zeros((0, 5)))
    #: frames from the audio excerpt's centre to the paired onset (the onset lies after the centre)
    audio_lead: int = 0

    def __len__(self) -> int:
        return len(self.rows)

    @classmethod
    def from_corpus(
        cls,
        corpus: Corpus,
        split: str,
        condition: str = "same",
        max_pieces: int | None = None,
        dedupe: bool = True,
    ) -> PairSet:
        if condition not in CONDITIONS:
            raise UserError(f"unknown condition {condition!r}; one of {', '.join(CONDITIONS)}")
        ids = corpus.ids(split)[: max_pieces or None]
        ps = cls(piece_ids=[])
        rows: list[np.ndarray] = []
        for pid in ids:
            piece = corpus.load(pid)
            r_ok = [i for i, r in enumerate(piece.renders) if r.condition == condition]
            p_ok = [j for j, p in enumerate(piece.performances) if p.condition == condition]
            if not r_ok or not p_ok:
                continue
            pno = len(ps.piece_ids)
            ps.piece_ids.append(pid)
            strip_ids = {}
            for i in r_ok:
                strip_ids[i] = len(ps.strips)
                ps.strips.append(piece.renders[i].strip)
                ps.strip_piece.append(pno)
            spec_ids = {}
            for j in p_ok:
                spec_ids[j] = len(ps.specs)
                ps.specs.append(piece.performances[j].spec)
                ps.spec_piece.append(pno)
            for i in r_ok:
                for j in p_ok:
                    idx = piece.pairs(i, j)
                    if len(idx) == 0:
                        continue
                    x = piece.renders[i].note_x[idx].astype(np.float64)
                    f = piece.performances[j].note_frame[idx].astype(np.float64)
                    if dedupe:
                        _, first = np.unique(np.round(f, 3), return_index=True)
                        x, f = x[first], f[first]
                    block = np.stack(
                        [
                            np.full_like(x, strip_ids[i]),
                            x,
                            np.full_like(x, spec_ids[j]),
                            f,
                            np.full_like(x, pno),
                        ],
                        axis=1,
                    )
                    rows.append(block)
        if rows:
            ps.rows = np.concatenate(rows)
        return ps

    def require(self, what: str) -> PairSet:
        if len(self) == 0:
            raise UserError(
                f"no aligned pairs for {what}; is the corpus built with that split and condition?"
            )
        return self

    def evenly(self, n: int) -> np.ndarray:
        """``n`` row indices spread evenly over all pairs (all of them when there are fewer)."""
        if n >= len(self):
            return np.arange(len(self))
        return np.unique(np.round(np.linspace(0, len(self) - 1, n)).astype(np.int64))

    def sheet_batch(
        self, idx: np.ndarray, jitter_px: float = 0.0, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        """Network sheet windows (B, 1, 80, 100) at the pairs' noteheads (+- ``jitter_px``)."""
        out = np.empty((len(idx), C.SHEET_WINDOW_H, C.SHEET_WINDOW_W), np.uint8)
        for k, r in enumerate(self.rows[idx]):
            x = r[1] + (rng.uniform(-jitter_px, jitter_px) if rng is not None and jitter_px else 0.0)
            out[k] = window_at(self.strips[int(r[0])], x)
        return sheet_to_network(out)

    def audio_batch(self, idx: np.ndarray, frames: int) -> np.ndarray:
        """Network audio excerpts (B, 1, 92, frames) centred ``audio_lead`` frames before the pairs'
        onset frames."""
        out = np.empty((len(idx), frames, C.N_BINS), np.float32)
        for k, r in enumerate(self.rows[idx]):
            out[k] = audio_window(self.specs[int(r[2])], r[3] - self.audio_lead, frames)
        return audio_to_network(out)

    def piece_of(self, idx: np.ndarray) -> np.ndarray:
        return self.rows[idx, 4].astype(np.int64)


@dataclass
class SnippetSource:
    """Unlabeled strips and spectrograms for self-supervised pre-training."""

    strips: list[np.ndarray] = field(default_factory=list)
    specs: list[np.ndarray] = field(default_factory=list)

    @classmethod
    def from_corpora(
        cls, sources: Iterable[tuple[Corpus, Sequence[str | None]]], condition: str | None = "same"
    ) -> SnippetSource:
        """Strips/specs of the given (corpus, splits) pairs; split None = every piece of that corpus."""
        src = cls()
        for corpus, splits in sources:
            seen: set[str] = set()
            for split in splits:
                for pid in corpus.ids(split):
                    if pid in seen:
                        continue
                    seen.add(pid)
                    piece = corpus.load(pid)
                    src.strips += [
                        r.strip for r in piece.renders if condition is None or r.condition == condition
                    ]
                    src.specs += [
                        p.spec for p in piece.performances if condition is None or p.condition == condition
                    ]
        return src

    def _weights(self, sizes: list[int]) -> np.ndarray:
        w = np.asarray(sizes, np.float64)
        return w / w.sum()

    def sheet_windows(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` network sheet windows at uniform random positions (length-weighted over strips)."""
        if not self.strips:
            raise UserError("no sheet strips to pre-train on (empty corpus/pool?)")
        which = rng.choice(len(self.strips), size=n, p=self._weights([s.shape[1] for s in self.strips]))
        out = np.empty((n, C.SHEET_WINDOW_H, C.SHEET_WINDOW_W), np.uint8)
        for k, i in enumerate(which):
            s = self.strips[i]
            x = rng.uniform(
                C.SHEET_WINDOW_W / 2, max(C.SHEET_WINDOW_W / 2, s.shape[1] - C.SHEET_WINDOW_W / 2)
            )
            out[k] = window_at(s, x)
        return sheet_to_network(out)

    def audio_excerpts(self, n: int, width: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` audio context excerpts (B, 1, 92, width) at uniform random frames."""
        if not self.specs:
            raise UserError("no spectrograms to pre-train on (empty corpus/pool?)")
        which = rng.choice(len(self.specs), size=n, p=self._weights([len(s) for s in self.specs]))
        out = np.empty((n, width, C.N_BINS), np.float32)
        for k, i in enumerate(which):
            out[k] = audio_window(self.specs[i], rng.uniform(0, len(self.specs[i])), width)
        return audio_to_network(out)
