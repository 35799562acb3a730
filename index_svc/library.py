"""A library as the index service serves it: vectors, per-row positions, titles and a search backend.

``ServedLibrary.from_arrays`` builds one from arrays (used by ingestion and tests);
``ServedLibrary.open(dir)`` loads a library written by ``scoreid library build`` through the core
API ``scoreid.library.Library.open``. ``hits(scores, rows)`` turns search results into the
per-row positions (piece, page, system, page x, system band) the aggregator votes with, and each
hit's piece ``chance_weight`` (mean windows per piece / the piece's windows,
:func:`scoreid.identify.tally.chance_weights`) so votes are normalised for piece length.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scoreid import contract as C
from scoreid.identify.tally import chance_weights
from scoreid.search.backends import SearchIndex, make_index


@dataclass
class RowMeta:
    """Per-row position of each library window (arrays of equal length)."""

    piece: np.ndarray  # int32 index into ``piece_ids``
    page: np.ndarray
    system: np.ndarray
    x: np.ndarray
    y0: np.ndarray
    y1: np.ndarray

    def __len__(self) -> int:
        return len(self.piece)

    @staticmethod
    def concat(a: RowMeta, b: RowMeta) -> RowMeta:
        return RowMeta(
            *(np.concatenate([getattr(a, f), getattr(b, f)]) for f in RowMeta.__dataclass_fields__)
        )


@dataclass
class ServedLibrary:
    name: str
    vectors: np.ndarray
    meta: RowMeta
    piece_ids: list[str]
    titles: dict[str, str]
    backend: str = "exact"
    backend_options: dict[str, Any] = field(default_factory=dict)
    index: SearchIndex | None = None
    lock: threading.RLock = field(default_factory=threading.RLock)
    path: Path | None = None  # the library directory (ingestion writes new pieces there)
    model_dir: Path | None = None  # the model that embedded the library
    model_sha256: str = ""  # its fingerprint (scoreid.tensors.model_fingerprint)
    _chance: np.ndarray | None = None  # per piece index: chance weight (recomputed after a change)

    def __post_init__(self) -> None:
        if len(self.vectors) != len(self.meta):
            raise ValueError(f"{len(self.vectors)} vectors but {len(self.meta)} metadata rows")
        if self.index is None:
            self.index = make_index(self.backend, self.vectors, **self.backend_options)

    @classmethod
    def open(cls, path: str | Path, name: str, backend: str = "exact", **options: Any) -> ServedLibrary:
        """Load a library directory with the core library API (``scoreid.library.Library``)."""
        from scoreid.library import Library

        lib = Library.open(Path(path))
        C.with_audio_window(lib.contract.audio_window_frames).check_compatible(
            lib.contract, what=f"library {path}"
        )
        piece_ids = list(lib.piece_ids)
        lookup = {p: i for i, p in enumerate(piece_ids)}
        m = lib.meta
        piece = np.array([lookup[str(p)] for p in m["piece"]], np.int32)
        rows = RowMeta(piece, *(np.asarray(m[f]) for f in ("page", "system", "x", "y0", "y1")))
        titles = {pid: lib.title(pid) for pid in piece_ids}
        out = cls(name, lib.vectors, rows, piece_ids, titles, backend, dict(options))
        out.path = Path(path)
        out.model_dir = Path(lib.index["model"]["dir"])
        out.model_sha256 = str(lib.index["model"].get("sha256", ""))
        return out

    def __len__(self) -> int:
        return len(self.vectors)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        with self.lock:
            assert self.index is not None
            return self.index.search(queries, k)

    def add_piece(self, piece_id: str, title: str, vectors: np.ndarray, meta: RowMeta) -> None:
        """Append a piece's windows (ingestion); the search backend is extended in place or rebuilt."""
        with self.lock:
            if piece_id in self.piece_ids:
                raise ValueError(f"piece {piece_id!r} is already in library {self.name!r}")
            self.piece_ids.append(piece_id)
            self.titles[piece_id] = title
            meta = RowMeta(np.full(len(vectors), len(self.piece_ids) - 1, np.int32), meta.page, meta.system,
                           meta.x, meta.y0, meta.y1)  # fmt: skip
            self.vectors = np.concatenate([self.vectors, np.asarray(vectors, np.float32)])
            self.meta = RowMeta.concat(self.meta, meta)
            self._chance = None
            add = getattr(self.index, "add", None)
            if add is not None:
                add(np.asarray(vectors, np.float32))
            else:
                self.index = make_index(self.backend, self.vectors, **self.backend_options)

    def chance(self) -> np.ndarray:
        """Chance weight of every piece index (see the module docstring)."""
        c = self._chance
        if c is None:
            counts = np.bincount(self.meta.piece, minlength=len(self.piece_ids))
            w = chance_weights({i: int(n) for i, n in enumerate(counts)})
            c = np.array([w.get(i, 1.0) for i in range(len(counts))], np.float64)
            self._chance = c
        return c

    def hit(self, row: int, score: float) -> dict[str, Any]:
        m = self.meta
        k = int(m.piece[row])
        return {"row": int(row), "score": float(score), "piece": self.piece_ids[k],
                "page": int(m.page[row]), "system": int(m.system[row]), "x": float(m.x[row]),
                "y0": float(m.y0[row]), "y1": float(m.y1[row]),
                "chance_weight": float(self.chance()[k])}  # fmt: skip
