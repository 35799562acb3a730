"""The library on disk and its reader, ``Library.open(LIB_DIR)``.

Layout (format ``scoreid-library/1``)::

    LIB_DIR/library.json          {"format", "contract" (the model's), "model" {dir, sheet_sha256,
                                   training}, "stride", "pieces": {pid: {title, composer, sources,
                                   fingerprint, pages: [{file, page, angle_deg, staff_space,
                                   systems: [[top, bottom, left, right], ...]}], n_windows,
                                   system_offsets, warnings}}}
    LIB_DIR/pieces/<pid>.npz      vectors float32 [n, 32] (L2-normalised sheet embeddings) and,
                                   per row, page int16, system int16, x float32 (window centre on
                                   the deskewed page, page px), y0 / y1 float32 (the window's rows
                                   on the page), strip_x float32 (window centre on the strip at
                                   the contract scale)
    LIB_DIR/pieces/<pid>.png      the piece's unrolled strip (contract scale), for plots

Each piece is stored on its own, so adding or removing one rewrites only ``library.json``.
``Library.vectors`` concatenates the pieces in sorted id order; ``Library.meta`` holds the
per-row metadata as arrays (``piece`` as the piece id).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scoreid.contract import Contract, ContractError
from scoreid.errors import UserError

FORMAT = "scoreid-library/1"
INDEX = "library.json"
META_FIELDS = ("page", "system", "x", "y0", "y1", "strip_x")
PIECE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")  #: what a piece id may be


class LibraryError(UserError):
    """A library directory that cannot be used (missing, corrupt, or for another model)."""


@dataclass
class PieceVectors:
    vectors: np.ndarray  # float32 [n, 32]
    meta: dict[str, np.ndarray]  # META_FIELDS -> [n]


def piece_file(lib_dir: Path, pid: str, suffix: str = ".npz") -> Path:
    return lib_dir / "pieces" / f"{pid}{suffix}"


def read_index(lib_dir: Path) -> dict[str, Any]:
    path = lib_dir / INDEX
    if not path.is_file():
        raise LibraryError(
            f"{lib_dir}: not a scoreid library (no {INDEX}); build one with `scoreid library build`"
        )
    try:
        index = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise LibraryError(f"{path}: unreadable library index ({e})") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise LibraryError(f"{path}: unknown library format, expected {FORMAT!r}")
    return index


def write_index(lib_dir: Path, index: dict[str, Any]) -> None:
    """Atomic write (temp file + rename), so a crash never leaves a half-written index."""
    lib_dir.mkdir(parents=True, exist_ok=True)
    tmp = lib_dir / (INDEX + ".tmp")
    tmp.write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, lib_dir / INDEX)


def save_piece(lib_dir: Path, pid: str, pv: PieceVectors, strip: np.ndarray | None = None) -> None:
    path = piece_file(lib_dir, pid)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    arrays = {"vectors": pv.vectors.astype(np.float32), **pv.meta}
    np.savez_compressed(tmp, **arrays)  # type: ignore[arg-type]
    os.replace(tmp, path)
    if strip is not None:
        from PIL import Image

        Image.fromarray(strip).save(piece_file(lib_dir, pid, ".png"))


def load_piece(lib_dir: Path, pid: str) -> PieceVectors:
    path = piece_file(lib_dir, pid)
    try:
        with np.load(path) as z:
            return PieceVectors(z["vectors"].astype(np.float32), {k: z[k] for k in META_FIELDS})
    except (OSError, KeyError, ValueError) as e:
        raise LibraryError(
            f"{path}: unreadable piece data ({e}); rebuild it with `scoreid library add`"
        ) from None


def system_layout(piece: dict[str, Any]) -> list[tuple[int, int]]:
    """(page index, system index on that page) of each of a piece's systems, in strip order (the
    systems are unrolled page by page, in reading order); ``piece`` is its ``library.json`` entry."""
    return [
        (k, s) for k, pg in enumerate(piece.get("pages") or []) for s in range(len(pg.get("systems", [])))
    ]


class Library:
    """A built library opened for search: ``vectors`` (N, 32), ``meta`` (per row), ``pieces``."""

    def __init__(
        self, lib_dir: Path, index: dict[str, Any], vectors: np.ndarray, meta: dict[str, np.ndarray]
    ):
        self.dir = lib_dir
        self.index = index
        self.vectors = vectors
        self.meta = meta
        self.pieces: dict[str, dict[str, Any]] = index["pieces"]
        self._geometries: dict[str, tuple[np.ndarray, np.ndarray, float, list[tuple[int, int]]]] = {}
        self.contract = Contract.from_dict(index["contract"])
        self.stride = float(index["stride"])
        ids = sorted(self.pieces)
        self.piece_ids = ids
        #: row range [start, end) of each piece in ``vectors``
        self.rows: dict[str, tuple[int, int]] = {}
        start = 0
        for pid in ids:
            n = int(self.pieces[pid]["n_windows"])
            self.rows[pid] = (start, start + n)
            start += n

    @classmethod
    def open(cls, lib_dir: str | Path) -> Library:
        lib_dir = Path(lib_dir)
        index = read_index(lib_dir)
        try:
            Contract.from_dict(index["contract"])
        except (KeyError, TypeError, ContractError) as e:
            raise LibraryError(f"{lib_dir / INDEX}: malformed contract ({e})") from None
        bad = [pid for pid in index["pieces"] if not isinstance(pid, str) or not PIECE_ID_RE.match(pid)]
        if bad:  # a piece id names a file under pieces/: never a path, never control characters
            raise LibraryError(f"{lib_dir / INDEX}: invalid piece ids {bad[:3]!r}; rebuild the library")
        vecs, metas = [], []
        for pid in sorted(index["pieces"]):
            pv = load_piece(lib_dir, pid)
            if len(pv.vectors) != int(index["pieces"][pid]["n_windows"]):
                raise LibraryError(f"{piece_file(lib_dir, pid)}: {len(pv.vectors)} rows, index says "
                                   f"{index['pieces'][pid]['n_windows']}; rebuild the piece")  # fmt: skip
            vecs.append(pv.vectors)
            m = dict(pv.meta)
            m["piece"] = np.full(len(pv.vectors), pid, dtype=object)
            metas.append(m)
        dim = int(index["contract"].get("embed_dim", 32))
        vectors = np.concatenate(vecs) if vecs else np.zeros((0, dim), np.float32)
        keys = (*META_FIELDS, "piece")
        meta = {k: (np.concatenate([m[k] for m in metas]) if metas else np.zeros(0)) for k in keys}
        return cls(lib_dir, index, np.ascontiguousarray(vectors, np.float32), meta)

    def __len__(self) -> int:
        return len(self.vectors)

    def row(self, i: int) -> dict[str, Any]:
        """Metadata of one row as plain Python values."""
        out: dict[str, Any] = {"piece": str(self.meta["piece"][i])}
        for k in META_FIELDS:
            v = self.meta[k][i]
            out[k] = int(v) if k in ("page", "system") else round(float(v), 1)
        return out

    def at_strip_x(
        self, pid: str, strip_x: float, speed: float | None = None, turn_lead_s: float = 2.0
    ) -> dict[str, Any]:
        """The position ``strip_x`` (px on the piece's unrolled strip, any value, not only a window
        centre) as page (over the piece's pages in order), the file and page within it, system, page
        x and band, and ``show_page``: the page to show — the next one once the music, moving on at
        ``speed`` strip px/s, is within ``turn_lead_s`` of the end of a page's last system (so a
        page turns before the music leaves it and never before its last system)."""
        s, e = self.rows[pid]
        sx, offs, width, layout = self._geometry(pid)
        k = int(np.clip(np.searchsorted(offs, strip_x, side="right") - 1, 0, len(offs) - 1))
        end = float(offs[k + 1]) if k + 1 < len(offs) else width
        in_sys = np.flatnonzero((sx >= offs[k]) & (sx < end))
        cand = in_sys if len(in_sys) else np.arange(e - s)
        i = s + int(cand[np.argmin(np.abs(sx[cand] - strip_x))])
        out = self.row(i)
        scale = 1.0
        if len(in_sys) > 1:
            a, b = s + in_sys[0], s + in_sys[-1]
            scale = float(
                (self.meta["x"][b] - self.meta["x"][a]) / (self.meta["strip_x"][b] - self.meta["strip_x"][a])
            )
        out["x"] = round(float(self.meta["x"][i] + (strip_x - float(self.meta["strip_x"][i])) * scale), 1)
        out["strip_x"] = round(float(strip_x), 1)
        pages = self.pieces[pid].get("pages") or []
        page = int(out["page"])
        if 0 <= page < len(pages):
            out["file"], out["file_page"] = pages[page].get("file", ""), int(pages[page].get("page", 0))
        out["show_page"] = page
        last_on_page = k + 1 < len(layout) and layout[k + 1] == (page + 1, 0)  # the next starts a page
        if speed and speed > 0 and last_on_page and (end - strip_x) / speed <= turn_lead_s:
            out["show_page"] = page + 1
        return out

    def _geometry(self, pid: str) -> tuple[np.ndarray, np.ndarray, float, list[tuple[int, int]]]:
        """A piece's window strip x, system offsets, strip width and system layout (computed once:
        an opened library does not change)."""
        g = self._geometries.get(pid)
        if g is None:
            s, e = self.rows[pid]
            sx = self.meta["strip_x"][s:e]
            offs = np.asarray(self.pieces[pid].get("system_offsets") or [0], np.float64)
            width = float(self.pieces[pid].get("strip_width") or (float(sx[-1]) + 1.0))
            g = self._geometries[pid] = (sx, offs, width, system_layout(self.pieces[pid]))
        return g

    def title(self, pid: str) -> str:
        return str(self.pieces[pid].get("title") or pid)
