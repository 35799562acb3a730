"""A core library as the index service serves it: the name it is served under, a search backend over
its vectors (as :attr:`scoreid.library.Library.search_vectors` holds them: with the hub correction
when the library has one) and the lock that keeps searches and additions apart.

The library itself (vectors, per-row positions, piece ids and titles, chance weights) is the core
model :class:`scoreid.library.Library`; this module adds only the serving side.
``ServedLibrary.open(dir, name)`` opens a library written by ``scoreid library build``;
``ServedLibrary(name, vectors, meta, piece_ids, titles)`` serves one made from arrays (tests,
tools). ``add(piece)`` stores a built piece in the library directory and serves it at once (admin
ingestion). ``hit(row, score)`` is a search result as the index returns it: the row's position
(piece, page, system, page x, system band) that the aggregator votes with, and the piece's
``chance_weight`` (:meth:`scoreid.library.Library.chance_weights`) so votes are normalised for
piece length.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scoreid import contract as C
from scoreid.library.store import Library, Piece, PieceVectors, store_new_piece
from scoreid.search.backends import SearchIndex, make_index


@dataclass
class RowMeta:
    """The positions a hit carries, per row (arrays of equal length): a view of the core library's
    rows, or the rows of a library (or piece) made from arrays."""

    piece: np.ndarray  # int32 index into ``piece_ids``
    page: np.ndarray
    system: np.ndarray
    x: np.ndarray
    y0: np.ndarray
    y1: np.ndarray

    def __len__(self) -> int:
        return len(self.piece)

    def positions(self) -> dict[str, np.ndarray]:
        """As the core library's per-row positions (``strip_x``, not known here, is NaN)."""
        return {
            "page": self.page,
            "system": self.system,
            "x": self.x,
            "y0": self.y0,
            "y1": self.y1,
            "strip_x": np.full(len(self.piece), np.nan, np.float32),
        }


class ServedLibrary:
    """A core library (``library``) served under ``name`` with a search backend (``search_index``)."""

    def __init__(
        self,
        name: str,
        vectors: np.ndarray,
        meta: RowMeta,
        piece_ids: list[str],
        titles: dict[str, str],
        backend: str = "exact",
        backend_options: dict[str, Any] | None = None,
    ):
        """A library made from arrays: ``vectors`` with their positions ``meta`` (each piece's rows
        together, in ``piece_ids`` order), titles by piece id."""
        if len(vectors) != len(meta):
            raise ValueError(f"{len(vectors)} vectors but {len(meta)} metadata rows")
        library = Library.from_arrays(vectors, meta.piece, meta.positions(), piece_ids, titles)
        self._serve(name, library, backend, backend_options or {})

    def _serve(self, name: str, library: Library, backend: str, options: dict[str, Any]) -> None:
        self.name = name
        self.library = library
        self.backend = backend
        self.backend_options = options
        self.lock = threading.RLock()
        self.search_index: SearchIndex = make_index(backend, library.search_vectors, **options)
        model = library.index["model"]
        #: the model that embedded the library (None for one made from arrays)
        self.model_dir = None if library.dir is None else Path(model["dir"])
        #: its fingerprint as the library records it (``scoreid.tensors.model_fingerprint``)
        self.model_sha256 = str(model.get("sha256", ""))

    @classmethod
    def serve(cls, name: str, library: Library, backend: str = "exact", **options: Any) -> ServedLibrary:
        """Serve an open core library."""
        out = cls.__new__(cls)
        out._serve(name, library, backend, dict(options))
        return out

    @classmethod
    def open(cls, path: str | Path, name: str, backend: str = "exact", **options: Any) -> ServedLibrary:
        """Open a library directory (:meth:`scoreid.library.Library.open`) and serve it."""
        lib = Library.open(Path(path))
        C.with_audio_window(
            lib.contract.audio_window_frames, lib.contract.audio_lead_frames
        ).check_compatible(lib.contract, what=f"library {path}")
        return cls.serve(name, lib, backend, **options)

    # the core library's parts the service reads
    @property
    def vectors(self) -> np.ndarray:
        return self.library.vectors

    @property
    def piece_ids(self) -> list[str]:
        return self.library.piece_ids

    @property
    def titles(self) -> dict[str, str]:
        return self.library.titles

    @property
    def path(self) -> Path | None:
        """The library directory (ingestion writes new pieces there); None for one made from arrays."""
        return self.library.dir

    @property
    def meta(self) -> RowMeta:
        m = self.library.meta
        return RowMeta(self.library.piece_index, m["page"], m["system"], m["x"], m["y0"], m["y1"])

    def __len__(self) -> int:
        return len(self.library)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        with self.lock:
            return self.search_index.search(self.library.search_queries(queries), k)

    def add(self, piece: Piece) -> None:
        """Store a built piece in the library directory (the whole piece, with the copies of its page
        files, or nothing: :func:`~scoreid.library.store.store_new_piece`), then serve it."""
        if self.library.dir is None:
            raise ValueError(f"library {self.name!r} was not loaded from a directory")
        if piece.pid in self.library.rows:
            raise ValueError(f"piece {piece.pid!r} is already in library {self.name!r}")
        store_new_piece(self.library.dir, piece)  # searches go on meanwhile
        self._append(piece)

    def add_piece(self, piece_id: str, title: str, vectors: np.ndarray, meta: RowMeta) -> None:
        """Serve a piece's windows at positions ``meta`` (``meta.piece`` is not read) without storing it."""
        entry = {"title": title, "n_windows": len(vectors)}
        self._append(Piece(piece_id, entry, PieceVectors(np.asarray(vectors, np.float32), meta.positions())))

    def _append(self, piece: Piece) -> None:
        """The piece's rows after the others', in the library and the search backend (extended in
        place, or rebuilt)."""
        with self.lock:
            if piece.pid in self.library.rows:
                raise ValueError(f"piece {piece.pid!r} is already in library {self.name!r}")
            rows = self.library.search_rows_of(piece)
            self.library.append(piece)
            add = getattr(self.search_index, "add", None)
            if add is not None:
                add(rows)
            else:
                self.search_index = make_index(
                    self.backend, self.library.search_vectors, **self.backend_options
                )

    def hit(self, row: int, score: float) -> dict[str, Any]:
        lib = self.library
        m = lib.meta
        pid = lib.piece_ids[int(lib.piece_index[row])]
        return {
            "row": int(row),
            "score": float(score),
            "piece": pid,
            "page": int(m["page"][row]),
            "system": int(m["system"][row]),
            "x": float(m["x"][row]),
            "y0": float(m["y0"][row]),
            "y1": float(m["y1"][row]),
            "chance_weight": float(lib.chance_weights().get(pid, 1.0)),
        }
